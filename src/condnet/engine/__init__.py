"""Inference engine: block-sparse CPU kernels that turn skipped blocks into wall-clock speed."""

from condnet.engine.engine import Engine

__all__ = ["Engine"]
