"""A gated layer computed block by block: only the (example, block) pairs that are on, in PyTorch.

The plain forward computes the whole layer and multiplies by the mask; for a wide layer with few
blocks on (a mixture of experts over the input) that is most of the training time spent on outputs
that are thrown away. Here each block's weights multiply only the examples that chose it, and the
backward pass does the same. The result equals the masked computation up to float rounding, and the
gradients too, provided no gradient is owed to an inactive block: the mask is hard (carries no
gradient) and the gate values are 0 wherever the mask is 0 by construction (every router's are).

The loop over blocks costs about 0.1-0.2 ms a block (forward and backward, one core), whatever the
block's size; it pays when each block's share of the dense product, batch x inputs x block units, is
larger than that (measured side by side, docs/active_blocks_speed.py, RESULTS 8.10: at batch 128 over
784 inputs, 32-unit blocks take 0.51-1.07x the masked product's time, 16-unit ones up to 1.5x, and
after a layer of 32-64 units 2-3.6x).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MIN_WORK_PER_BLOCK = 3_000_000  # batch x inputs x block units: less, and the loop costs more than it saves
MIN_BLOCK_SIZE_INFERENCE = 64  # without a backward pass the loop's cost per block is less (RESULTS 8.10)
MAX_ACTIVE_SHARE = 0.25  # more blocks on than this: the masked dense product is faster


def pays(mask: torch.Tensor, n_in: int, block_size: int) -> bool:
    """Whether computing only the active blocks is worth it (and exact) for this mask, (batch, blocks),
    over `n_in` inputs: in training (gradients on) by the work per block, measured forward and backward;
    in inference by the block's size (the work rule took the dense product at batch 1-50 for 784-1024
    layers of 64-unit blocks, 1.3-1.9x slower)."""
    if mask.requires_grad or float(mask.mean()) > MAX_ACTIVE_SHARE:
        return False
    if torch.is_grad_enabled():
        return len(mask) * n_in * block_size >= MIN_WORK_PER_BLOCK
    return block_size >= MIN_BLOCK_SIZE_INFERENCE


def active_blocks(
    h, layer: torch.nn.Linear, activation, mask, scale, block_size: int, dropout: float = 0.0
) -> torch.Tensor:
    """activation(layer(h)) * repeat(scale), computing only the blocks where mask is 1; with unit
    dropout at rate `dropout` drawn for those units only (the others are 0 either way: the same
    distribution as dropout over the whole layer, for a fraction of the random draws).

    h: (batch, n_in); mask, scale: (batch, n_blocks); returns (batch, n_blocks * block_size)."""
    batch, n_blocks = mask.shape
    example, block = mask.nonzero(as_tuple=True)
    order = torch.argsort(block, stable=True)  # group the pairs by block
    example, block = example[order], block[order]
    # split (not slicing) so that the backward pass writes each weight gradient once, not once per block
    weights, biases = layer.weight.split(block_size), layer.bias.split(block_size)
    parts, start = [], 0
    for b, count in enumerate(torch.bincount(block, minlength=n_blocks).tolist()):
        if count:
            rows = example[start : start + count]
            out = activation(F.linear(h[rows], weights[b], biases[b]))
            parts.append(out * scale[rows, b, None])
            start += count
    if not parts:
        return h.new_zeros(batch, n_blocks * block_size)
    values = torch.cat(parts)
    if dropout > 0:
        values = F.dropout(values, dropout)
    out = h.new_zeros(batch * n_blocks, block_size).index_add(0, example * n_blocks + block, values)
    return out.reshape(batch, n_blocks * block_size)
