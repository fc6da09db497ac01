"""Weights laid out once, at compile time, for the block-sparse access pattern of the kernels."""

from __future__ import annotations

import numpy as np
import torch


def to_tiles(weight: torch.Tensor, bs_in: int, bs_out: int) -> np.ndarray:
    """W (n_out, n_in) -> tiles (n_out_blocks, n_in_blocks, bs_out, bs_in): tiles[j, i] is W's
    (output block j, input block i) sub-matrix, contiguous."""
    n_out, n_in = weight.shape
    w = weight.detach().to(torch.float32).numpy()
    tiles = w.reshape(n_out // bs_out, bs_out, n_in // bs_in, bs_in).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles)


def policy_tiles(z: torch.Tensor, bs_in: int) -> np.ndarray:
    """Z (n_blocks, n_in) -> (n_in_blocks, n_blocks, bs_in): Z cut by input block."""
    k, n_in = z.shape
    zt = z.detach().to(torch.float32).numpy()
    return np.ascontiguousarray(zt.reshape(k, n_in // bs_in, bs_in).transpose(1, 0, 2))


def pack(layers) -> tuple[np.ndarray, np.ndarray]:
    """Every layer's tiles, bias, Z tiles and d in one flat float32 buffer, and the (n_layers, 8) int64
    table of shapes and offsets that `kernels.forward_one` reads (columns: kernels.M_*)."""
    from condnet.engine import kernels

    parts, meta, offset = [], [], 0

    def put(array: np.ndarray) -> int:
        nonlocal offset
        start = offset
        parts.append(np.ascontiguousarray(array, np.float32).ravel())
        offset += array.size
        return start

    for layer in layers:
        n_out_blocks, n_in_blocks, bs_out, bs_in = layer.tiles.shape
        row = [n_in_blocks, bs_in, n_out_blocks, bs_out, put(layer.tiles), put(layer.bias), -1, -1]
        if layer.z_tiles is not None:
            row[kernels.M_Z], row[kernels.M_D] = put(layer.z_tiles), put(layer.d)
        meta.append(row)
    return np.concatenate(parts), np.asarray(meta, np.int64)
