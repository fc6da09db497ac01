"""Multiply-add counts: what a forward pass costs when only active blocks are computed.

Paper section 3.4: a layer's product only needs the active input units and the active output units,
((H * M_H) W) * M_O. The policy of layer l reads the same active inputs and produces one value per block.
"""

from __future__ import annotations

import numpy as np
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
    policy_rows: bool | list[int] = True,
    router_inputs: list[int | None] | None = None,
    view_macs: int = 0,
) -> torch.Tensor:
    """MACs per example, (batch,), when each layer computes only its active blocks.

    masks: per hidden layer, (batch, n_blocks) in {0, 1}. policy_rows: per layer, the dot products of its
    policy or router (CondNet.policy_rows), each over the active inputs; True: n_blocks every layer.
    router_inputs: per layer, the fixed length of those dot products when the router reads a view of the
    input (CondNet.router_inputs; None: the active inputs); view_macs: the view's own cost per example.
    """
    active_in = torch.full((masks[0].shape[0],), float(input_dim), dtype=torch.float64)
    total = torch.full_like(active_in, float(view_macs))
    if not isinstance(policy_rows, list):
        policy_rows = [mask.shape[1] if policy_rows else 0 for mask in masks]
    router_inputs = router_inputs or [None] * len(masks)
    for mask, size, rows, fixed in zip(masks, block_sizes, policy_rows, router_inputs, strict=True):
        active_out = mask.to(torch.float64).sum(dim=1) * size
        total += active_in * active_out
        total += (active_in if fixed is None else fixed) * rows
        active_in = active_out
    return total + active_in * n_classes


def weight_bytes(
    input_dim: int,
    block_sizes: list[int],
    n_classes: int,
    masks: list,
    policy_rows: list[int],
    router_inputs: list[int | None] | None = None,
    layer_bytes: int = 4,
    view_weights: int = 0,
) -> int:
    """Bytes of weights that block kernels read for one batch: each tile (output block, input block) that
    some example of the batch needs, and each policy's weights over the input blocks that some example
    has on. A tile needed by many examples is read once: at small batches and densities most tiles are
    needed by a few examples, and the weights, not the multiply-adds, bound the time.

    masks: per hidden layer, (batch, n_blocks) in {0, 1}; policy_rows, router_inputs: as for `active_macs`;
    layer_bytes: bytes per weight of the layers' tiles (4: float32; 2, 1: the engine's bf16, int8), the
    policies' weights being float32 either way; view_weights: those of the view's projection
    (CondNet.view_weights), read once per batch.
    """
    inputs_on, bs_in, policies, tiles = np.ones((len(masks[0]), 1), np.int64), input_dim, view_weights, 0
    router_inputs = router_inputs or [None] * len(masks)
    for mask, size, rows, fixed in zip(masks, block_sizes, policy_rows, router_inputs, strict=True):
        on = (np.asarray(mask) != 0).astype(np.int64)
        policies += (int(inputs_on.any(axis=0).sum()) * bs_in if fixed is None else fixed) * rows
        tiles += int(np.count_nonzero(on.T @ inputs_on)) * size * bs_in  # tiles some example needs
        inputs_on, bs_in = on, size
    tiles += int(inputs_on.any(axis=0).sum()) * bs_in * n_classes
    return 4 * policies + layer_bytes * tiles
