"""Block-sparse CPU kernels (numba): only active output blocks are computed, only active input blocks read.

Layout (made once by `condnet.engine.layout`): a layer's weights are cut into tiles
`tiles[j, i] = W[j-th output block, i-th input block]^T`, shape (bs_in, bs_out), contiguous, so the
product for one (output block, input block) pair streams one small contiguous tile. A dense input or
output is one block that is always on.

Batched products are grouped by output block: the examples that switched block j on share every tile
of block j, which is then read once for all of them (each tile row stays in L1 while it is applied to
every such example). Example-to-block grouping is done inside the kernel from the masks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

TANH, RELU, IDENTITY = 0, 1, 2


@njit(inline="always", fastmath=True)
def _activate(value, activation):
    if activation == TANH:
        return np.tanh(value)
    if activation == RELU:
        return max(value, np.float32(0.0))
    return value


@njit(inline="always", fastmath=True)
def _accumulate(acc, h, offset, tiles, j, i, start, stop):
    """acc += h[offset + a] * tiles[j, i, a] summed over rows a in [start, stop).

    Four rows per step: each step adds one sum of four products to acc, which cuts the chain of
    dependent additions through acc by four (about 2x faster for 16-unit blocks, 1.25x for 64).
    """
    n = acc.shape[0]
    a = start
    while a + 4 <= stop:
        x0, x1, x2, x3 = h[offset + a], h[offset + a + 1], h[offset + a + 2], h[offset + a + 3]
        for c in range(n):
            acc[c] += (
                x0 * tiles[j, i, a, c] + x1 * tiles[j, i, a + 1, c] + x2 * tiles[j, i, a + 2, c]
                + x3 * tiles[j, i, a + 3, c]
            )  # fmt: skip
        a += 4
    while a < stop:
        xa = h[offset + a]
        for c in range(n):
            acc[c] += xa * tiles[j, i, a, c]
        a += 1


ROWS_PER_CHUNK = 64  # tile rows applied to every example of a group while they sit in L1


@njit(inline="always", fastmath=True)
def _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc):
    """Compute output block j for the examples whose block j is on (rows, gathered, acc: scratch)."""
    batch = x.shape[0]
    n_in_blocks, bs_in, bs_out = tiles.shape[1], tiles.shape[2], tiles.shape[3]
    n = 0
    for b in range(batch):
        if out_mask[b, j]:
            rows[n] = b
            n += 1
    if n == 0:
        return
    for e in range(n):
        for c in range(bs_out):
            acc[e, c] = bias[j * bs_out + c]
    for i in range(n_in_blocks):
        m = 0  # examples of this group whose input block i is on
        for e in range(n):
            if in_mask[rows[e], i]:
                gathered[m] = e
                m += 1
        if m == 0:
            continue
        for start in range(0, bs_in, ROWS_PER_CHUNK):
            stop = min(start + ROWS_PER_CHUNK, bs_in)
            for g in range(m):
                e = gathered[g]
                _accumulate(acc[e], x[rows[e]], i * bs_in, tiles, j, i, start, stop)
    for e in range(n):
        for c in range(bs_out):
            out[rows[e], j * bs_out + c] = _activate(acc[e, c], activation)


@njit(fastmath=True, cache=True)
def block_layer(x, in_mask, tiles, bias, out_mask, activation, out):
    """out[b, block j] = f(sum over active input blocks i of x[b, block i] @ tiles[j, i] + bias) where
    out_mask[b, j]; out must be zero-filled by the caller (inactive blocks stay exactly 0).

    x: (batch, n_in) float32; in_mask: (batch, n_in_blocks) uint8; tiles: (n_out_blocks, n_in_blocks,
    bs_in, bs_out) float32; bias: (n_out,); out_mask: (batch, n_out_blocks) uint8; out: (batch, n_out).
    """
    batch = x.shape[0]
    rows = np.empty(batch, np.int64)
    gathered = np.empty(batch, np.int64)
    acc = np.empty((batch, tiles.shape[3]), np.float32)
    for j in range(tiles.shape[0]):
        _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc)


@njit(fastmath=True, parallel=True, cache=True)
def block_layer_parallel(x, in_mask, tiles, bias, out_mask, activation, out):
    """block_layer with the output blocks shared among threads (each writes its own columns)."""
    batch = x.shape[0]
    for j in prange(tiles.shape[0]):
        rows = np.empty(batch, np.int64)
        gathered = np.empty(batch, np.int64)
        acc = np.empty((batch, tiles.shape[3]), np.float32)
        _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc)


# Batch 1 (latency): the whole network in one call, so no Python runs between layers.
# Every layer lives in flat buffers described by one row of `meta`:
M_IN_BLOCKS, M_BS_IN, M_OUT_BLOCKS, M_BS_OUT, M_TILES, M_BIAS, M_Z, M_D = range(8)
NO_POLICY = -1


@njit(fastmath=True, cache=True)
def forward_one(x, weights, meta, taus, p_min, p_max, activation, mode, noise, given, masks, logits):
    """One example through every layer, reading and computing only active blocks.

    x: (input_dim,) float32. weights: every layer's tiles, bias, Z tiles and d, concatenated (float32).
    meta: (n_layers, 8) int64 offsets and shapes (see M_*); the last row is the output layer.
    taus: (n_hidden,) uniform policy rate, or < 0 for a learned (meta Z offset >= 0) or no policy.
    mode: 0 threshold, 1 sample (block on iff noise < sigma), 2 given masks. noise, given, masks:
    (n_hidden, max_blocks); masks receives the decisions. logits: (n_classes,) output.
    Views of `weights` are reshaped to their tile shapes: indexed that way, LLVM vectorizes the
    inner loops (flat index arithmetic defeats it, about 6x slower).
    """
    n_layers = meta.shape[0]
    max_width = 0
    for layer in range(n_layers):
        max_width = max(max_width, meta[layer, M_OUT_BLOCKS] * meta[layer, M_BS_OUT])
    h = x
    active_in = np.zeros(1, np.int64)  # the input is one block, always on
    n_active_in = 1
    for layer in range(n_layers):
        n_in_blocks, bs_in = meta[layer, M_IN_BLOCKS], meta[layer, M_BS_IN]
        n_out_blocks, bs_out = meta[layer, M_OUT_BLOCKS], meta[layer, M_BS_OUT]
        hidden = layer < n_layers - 1
        # decide which output blocks to compute
        active_out = np.empty(n_out_blocks, np.int64)
        n_active_out = 0
        if hidden and mode == 2:
            for j in range(n_out_blocks):
                if given[layer, j]:
                    active_out[n_active_out] = j
                    n_active_out += 1
        elif hidden and meta[layer, M_Z] != NO_POLICY:
            z0, d0 = meta[layer, M_Z], meta[layer, M_D]
            z = weights[z0 : z0 + n_in_blocks * bs_in * n_out_blocks].reshape(
                (n_in_blocks, bs_in, n_out_blocks)
            )
            sigma = weights[d0 : d0 + n_out_blocks].copy()
            for ii in range(n_active_in):
                i = active_in[ii]
                for a in range(bs_in):
                    xa = h[i * bs_in + a]
                    for c in range(n_out_blocks):
                        sigma[c] += xa * z[i, a, c]
            for j in range(n_out_blocks):
                s = p_min + (p_max - p_min) / (np.float32(1.0) + np.exp(-sigma[j]))
                if (mode == 0 and s > 0.5) or (mode == 1 and noise[layer, j] < s):
                    active_out[n_active_out] = j
                    n_active_out += 1
        elif hidden and taus[layer] >= 0:
            for j in range(n_out_blocks):
                if (mode == 0 and taus[layer] > 0.5) or (mode == 1 and noise[layer, j] < taus[layer]):
                    active_out[n_active_out] = j
                    n_active_out += 1
        else:
            for j in range(n_out_blocks):
                active_out[j] = j
            n_active_out = n_out_blocks
        if hidden:
            for j in range(n_out_blocks):
                masks[layer, j] = 0
            for jj in range(n_active_out):
                masks[layer, active_out[jj]] = 1
        # the product: active output blocks from active input blocks; other outputs are never read
        out = np.empty(max_width, np.float32) if hidden else logits
        t0, b0 = meta[layer, M_TILES], meta[layer, M_BIAS]
        tiles = weights[t0 : t0 + n_out_blocks * n_in_blocks * bs_in * bs_out].reshape(
            (n_out_blocks, n_in_blocks, bs_in, bs_out)
        )
        acc = np.empty(bs_out, np.float32)
        for jj in range(n_active_out):
            j = active_out[jj]
            for c in range(bs_out):
                acc[c] = weights[b0 + j * bs_out + c]
            for ii in range(n_active_in):
                i = active_in[ii]
                _accumulate(acc, h, i * bs_in, tiles, j, i, 0, bs_in)
            for c in range(bs_out):
                out[j * bs_out + c] = _activate(acc[c], activation if hidden else IDENTITY)
        h = out
        active_in = active_out
        n_active_in = n_active_out
