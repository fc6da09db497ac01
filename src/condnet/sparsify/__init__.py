"""Gating a trained dense network after the fact (condnet sparsify)."""
