"""Benchmarks: the engine against the dense PyTorch forward pass of the same weights."""
