"""What fits: seeds in 64 bits and models and batches in this machine's memory, checked before anything
is allocated, so that a size too big is a one-line error that names the limit, not minutes of swapping,
a MemoryError from deep inside or the kernel's OOM killer."""

from __future__ import annotations

import math
import os

from condnet.errors import ConfigError

MAX_SEED = 2**63 - 1  # numpy's and PyTorch's generators take seeds of at most 64 bits
TRAINING_COPIES = 4  # training holds the weights, their gradients and Adam's two moments


def check_seed(seed, where: str = "seed") -> int:
    """The seed as an int, or a ConfigError (a ValueError) that says the allowed range."""
    if isinstance(seed, bool) or not isinstance(seed, int) and not hasattr(seed, "__index__"):
        raise ConfigError(f"{where} must be a whole number from 0 to 2^63 - 1, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{where} must be a whole number from 0 to 2^63 - 1, got {seed}")
    return seed


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_model_fits(model, input_dim: int, n_classes: int, copies: int = 1) -> None:
    """ConfigError when `copies` float32 copies of the model's tensors do not fit in memory."""
    from condnet.checkpoint import expected_shapes

    weights = sum(math.prod(shape) for shape in expected_shapes(input_dim, n_classes, model).values())
    need = 4 * copies * weights
    if need > memory_bytes():
        held = f" ({copies} copies while training)" if copies > 1 else ""
        raise ConfigError(
            f"model.widths {model.widths}: {weights:.3g} float32 weights need {_gb(need)}{held}; this "
            f"machine has {_gb(memory_bytes())} of memory: choose smaller widths"
        )


def check_batch_fits(batch: int, floats_per_example: int, what: str = "--batch") -> None:
    """ConfigError when a batch's inputs and activations (float32, a few copies) exceed half the memory."""
    need = 4 * 4 * batch * floats_per_example  # inputs, two runtimes' activations, outputs
    if need > memory_bytes() // 2:
        raise ConfigError(
            f"{what} {batch} needs about {_gb(need)} for its inputs and activations; this machine has "
            f"{_gb(memory_bytes())} of memory: use a smaller batch"
        )
