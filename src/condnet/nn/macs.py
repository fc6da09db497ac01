"""Multiply-add counts: what a forward pass costs when only active blocks are computed.

Paper section 3.4: a layer's product only needs the active input units and the active output units,
((H * M_H) W) * M_O. The policy of layer l reads the same active inputs and produces one value per block.
"""

from __future__ import annotations

import torch


def dense_macs(input_dim: int, widths: list[int], n_classes: int) -> int:
    """MACs per example of the same network computed densely, without policies."""
    dims = [input_dim, *widths, n_classes]
    return sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=False))


def active_macs(
    input_dim: int,
    block_sizes: list[int],
    n_classes: int,
    masks: list[torch.Tensor],
    with_policy: bool | list[bool] = True,
) -> torch.Tensor:
    """MACs per example, (batch,), when each layer computes only its active blocks.

    masks: per hidden layer, (batch, n_blocks) in {0, 1}. with_policy (one value, or one per layer)
    adds the learned policy's n_in_active * n_blocks.
    """
    active_in = torch.full((masks[0].shape[0],), float(input_dim), dtype=torch.float64)
    total = torch.zeros_like(active_in)
    policies = with_policy if isinstance(with_policy, list) else [with_policy] * len(masks)
    for mask, size, policy in zip(masks, block_sizes, policies, strict=True):
        active_out = mask.to(torch.float64).sum(dim=1) * size
        total += active_in * active_out
        if policy:
            total += active_in * mask.shape[1]
        active_in = active_out
    return total + active_in * n_classes
