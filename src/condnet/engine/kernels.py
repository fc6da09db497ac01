"""Block-sparse CPU kernels (numba): only active output blocks are computed, only active input blocks read.

Layout (made once by `condnet.engine.layout`): a layer's weights are cut into tiles
`tiles[j, i] = W[j-th output block, i-th input block]`, shape (bs_out, bs_in), contiguous: one output
unit's weights over one input block are a contiguous row, and its value is a sum of dot products of
two contiguous vectors. A dense input or output is one block that is always on.

Why dot products: numba gives no way to hold a block of accumulators in registers, but LLVM keeps the
partial sums of a vectorized dot product in registers; several dot products in one loop (4 units at
batch 1, 4 examples x 2 units in batches) reuse every load. Measured against the former rank-1 form
(tiles transposed, a row of accumulators updated in memory), on 3072-640-640-10 at density 0.18:
first layer at batch 50 0.95 -> 0.72 ms; on 3072-256-512-10, 0.82 -> 0.29 ms, and 2x at batch 1.

Batched products are grouped by output block: the examples that switched block j on share every tile
of block j, which is then read once for all of them, four examples at a time. Example-to-block
grouping is done inside the kernel from the masks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

TANH, RELU, IDENTITY = 0, 1, 2
THRESHOLD, SAMPLE, GIVEN = 0, 1, 2  # how masks are decided


@njit(cache=True)  # no fastmath: it would let the compiler assume the answer is 0
def count_nonfinite(x):
    """How many entries of x (2-D, float32) are NaN or infinite; an integer sum, so it vectorizes."""
    flat = x.reshape(-1)
    count = 0
    for i in range(flat.shape[0]):
        count += not abs(flat[i]) < np.inf
    return count


# tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= 9 (beyond, tanh rounds to +-1 in float32), P of degree 5 and Q
# of degree 4 in x^2, fitted by iteratively reweighted linear least squares (Loeb) on the relative error
# over [0, 9]: max relative error 3.8e-7 in float32 (3 ulp; tests/test_engine.py checks it against
# float64 tanh). It vectorizes, where numba's np.tanh is a scalar libm call (~15 ns): 0.08 ms per layer
# of 3072-640-640-10 at batch 50 and density 0.18.
TANH_P = (1.0, 0.13688358664512634, 0.003878906834870577, 2.822079841280356e-05, 3.109726520733602e-08,
          -1.2582300652763667e-11)  # fmt: skip
TANH_Q = (1.0, 0.47021690011024475, 0.02728455886244774, 0.0003957279841415584, 1.3022632856518612e-06)
TANH_LIMIT = 9.0


@njit(inline="always", fastmath=True)
def tanh(value):
    x = min(max(value, np.float32(-TANH_LIMIT)), np.float32(TANH_LIMIT))
    z = x * x
    p = np.float32(TANH_P[5])
    for k in range(4, -1, -1):
        p = p * z + np.float32(TANH_P[k])
    q = np.float32(TANH_Q[4])
    for k in range(3, -1, -1):
        q = q * z + np.float32(TANH_Q[k])
    return min(max(x * p / q, np.float32(-1.0)), np.float32(1.0))


@njit(inline="always", fastmath=True)
def _activate(value, activation):
    if activation == TANH:
        return tanh(value)
    if activation == RELU:
        return max(value, np.float32(0.0))
    return value


@njit(inline="always", fastmath=True)
def _dot(x, w):
    total = np.float32(0.0)
    for a in range(x.shape[0]):
        total += x[a] * w[a]
    return total


@njit(inline="always", fastmath=True)
def _dot_1x4(x, w0, w1, w2, w3):
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for a in range(x.shape[0]):
        v = x[a]
        s0 += v * w0[a]
        s1 += v * w1[a]
        s2 += v * w2[a]
        s3 += v * w3[a]
    return s0, s1, s2, s3


@njit(inline="always", fastmath=True)
def _dot_4x2(x0, x1, x2, x3, w0, w1):
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.float32(0.0)
    for a in range(x0.shape[0]):
        u0, u1 = w0[a], w1[a]
        v0, v1, v2, v3 = x0[a], x1[a], x2[a], x3[a]
        s00 += v0 * u0
        s01 += v0 * u1
        s10 += v1 * u0
        s11 += v1 * u1
        s20 += v2 * u0
        s21 += v2 * u1
        s30 += v3 * u0
        s31 += v3 * u1
    return s00, s01, s10, s11, s20, s21, s30, s31


@njit(inline="always", fastmath=True)
def _add_dots(acc, x, w, a0, a1):
    """acc[c] += x . w[c, a0:a1] for every row c of w; x: (a1 - a0,), w: (rows, n), acc: (rows,)."""
    rows = w.shape[0]
    c = 0
    while c + 4 <= rows:
        s0, s1, s2, s3 = _dot_1x4(x, w[c, a0:a1], w[c + 1, a0:a1], w[c + 2, a0:a1], w[c + 3, a0:a1])
        acc[c] += s0
        acc[c + 1] += s1
        acc[c + 2] += s2
        acc[c + 3] += s3
        c += 4
    for r in range(c, rows):
        acc[r] += _dot(x, w[r, a0:a1])


@njit(inline="always", fastmath=True)
def _add_dots_four(acc, e0, e1, e2, e3, x0, x1, x2, x3, w, a0, a1):
    """acc[e_k, c] += x_k . w[c, a0:a1] for four examples k and every row c of w (the batched step)."""
    rows = w.shape[0]
    c = 0
    while c + 2 <= rows:
        s = _dot_4x2(x0, x1, x2, x3, w[c, a0:a1], w[c + 1, a0:a1])
        acc[e0, c] += s[0]
        acc[e0, c + 1] += s[1]
        acc[e1, c] += s[2]
        acc[e1, c + 1] += s[3]
        acc[e2, c] += s[4]
        acc[e2, c + 1] += s[5]
        acc[e3, c] += s[6]
        acc[e3, c + 1] += s[7]
        c += 2
    if c < rows:
        acc[e0, c] += _dot(x0, w[c, a0:a1])
        acc[e1, c] += _dot(x1, w[c, a0:a1])
        acc[e2, c] += _dot(x2, w[c, a0:a1])
        acc[e3, c] += _dot(x3, w[c, a0:a1])


# Wide input blocks (a dense first layer: 3072 inputs) are read in segments of this many inputs: the
# segment of a 64-unit tile (256 KiB) stays in L2 while every group of four examples passes over it.
# Measured on 3072-640-10 at batch 50 / 256, density 0.18: 1.1x faster than whole rows.
SEGMENT = 1024


@njit(inline="always", fastmath=True)
def _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc):
    """Compute output block j for the examples whose block j is on (rows, gathered, acc: scratch)."""
    batch = x.shape[0]
    n_in_blocks, bs_out, bs_in = tiles.shape[1], tiles.shape[2], tiles.shape[3]
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
        tile = tiles[j, i]
        for a0 in range(0, bs_in, SEGMENT):
            a1 = min(a0 + SEGMENT, bs_in)
            lo, hi = i * bs_in + a0, i * bs_in + a1
            g = 0
            while g + 4 <= m:
                e0, e1, e2, e3 = gathered[g], gathered[g + 1], gathered[g + 2], gathered[g + 3]
                x0, x1 = x[rows[e0], lo:hi], x[rows[e1], lo:hi]
                x2, x3 = x[rows[e2], lo:hi], x[rows[e3], lo:hi]
                _add_dots_four(acc, e0, e1, e2, e3, x0, x1, x2, x3, tile, a0, a1)
                g += 4
            for rest in range(g, m):
                e = gathered[rest]
                _add_dots(acc[e], x[rows[e], lo:hi], tile, a0, a1)
    for e in range(n):
        for c in range(bs_out):
            out[rows[e], j * bs_out + c] = _activate(acc[e, c], activation)


@njit(fastmath=True, cache=True)
def block_layer(x, in_mask, tiles, bias, out_mask, activation, out):
    """out[b, block j] = f(sum over active input blocks i of x[b, block i] @ tiles[j, i] + bias) where
    out_mask[b, j]; out must be zero-filled by the caller (inactive blocks stay exactly 0).

    x: (batch, n_in) float32; in_mask: (batch, n_in_blocks) uint8; tiles: (n_out_blocks, n_in_blocks,
    bs_out, bs_in) float32; bias: (n_out,); out_mask: (batch, n_out_blocks) uint8; out: (batch, n_out).
    """
    batch = x.shape[0]
    rows = np.empty(batch, np.int64)
    gathered = np.empty(batch, np.int64)
    acc = np.empty((batch, tiles.shape[2]), np.float32)
    for j in range(tiles.shape[0]):
        _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc)


@njit(fastmath=True, parallel=True, cache=True)
def block_layer_parallel(x, in_mask, tiles, bias, out_mask, activation, out, threads):
    """block_layer on `threads` threads. With many output blocks, each thread takes its share of them
    (each group of examples stays whole, so its tiles are read once); with few (a policy is a single
    block), each thread takes a slice of consecutive examples instead.
    """
    batch, n_out_blocks = x.shape[0], tiles.shape[0]
    if n_out_blocks >= 4 * threads:
        for j in prange(n_out_blocks):
            rows = np.empty(batch, np.int64)
            gathered = np.empty(batch, np.int64)
            acc = np.empty((batch, tiles.shape[2]), np.float32)
            _output_block(x, in_mask, tiles, bias, out_mask, activation, out, j, rows, gathered, acc)
    else:
        for t in prange(threads):
            lo, hi = t * batch // threads, (t + 1) * batch // threads
            block_layer(x[lo:hi], in_mask[lo:hi], tiles, bias, out_mask[lo:hi], activation, out[lo:hi])


@njit(inline="always", fastmath=True)
def _probability(logit, p_min, p_max):
    """sigma = sigmoid(logit) clipped to [p_min, p_max] as the model does (p_min + (p_max - p_min) s)."""
    return p_min + (p_max - p_min) / (np.float32(1.0) + np.exp(-logit))


@njit(inline="always")
def _switched_on(sigma, mode, noise):
    """The one rule for a block: on iff sigma > 0.5 (THRESHOLD) or noise < sigma (SAMPLE)."""
    return sigma > 0.5 if mode == THRESHOLD else noise < sigma


@njit(cache=True)  # no fastmath: exp overflows to inf for very negative logits, which must stay inf
def decide(logits, p_min, p_max, mode, noise, out):
    """out[b, j] = 1 iff block j of example b is on (`_switched_on`, mode THRESHOLD or SAMPLE; noise is
    not read in THRESHOLD mode), with the same float32 sigma as the model's policy and the batch-1
    kernel. One call instead of four numpy passes (50 x 16 logits with the noise draw: 7 us, 10.5 before).
    """
    for b in range(logits.shape[0]):
        for j in range(logits.shape[1]):
            out[b, j] = _switched_on(_probability(logits[b, j], p_min, p_max), mode, noise[b, j])


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
    mode: THRESHOLD, SAMPLE (block on iff noise < sigma) or GIVEN (the masks in `given`). noise, given, masks:
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
        if hidden and mode == GIVEN:
            for j in range(n_out_blocks):
                if given[layer, j]:
                    active_out[n_active_out] = j
                    n_active_out += 1
        elif hidden and meta[layer, M_Z] != NO_POLICY:
            z0, d0 = meta[layer, M_Z], meta[layer, M_D]
            z = weights[z0 : z0 + n_in_blocks * n_out_blocks * bs_in].reshape(
                (n_in_blocks, n_out_blocks, bs_in)
            )
            sigma = weights[d0 : d0 + n_out_blocks].copy()
            for ii in range(n_active_in):
                i = active_in[ii]
                _add_dots(sigma, h[i * bs_in : (i + 1) * bs_in], z[i], 0, bs_in)
            for j in range(n_out_blocks):
                s = _probability(sigma[j], p_min, p_max)
                if _switched_on(s, mode, noise[layer, j]):
                    active_out[n_active_out] = j
                    n_active_out += 1
        elif hidden and taus[layer] >= 0:
            for j in range(n_out_blocks):
                if _switched_on(taus[layer], mode, noise[layer, j]):
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
        tiles = weights[t0 : t0 + n_out_blocks * n_in_blocks * bs_out * bs_in].reshape(
            (n_out_blocks, n_in_blocks, bs_out, bs_in)
        )
        acc = np.empty(bs_out, np.float32)
        for jj in range(n_active_out):
            j = active_out[jj]
            for c in range(bs_out):
                acc[c] = weights[b0 + j * bs_out + c]
            for ii in range(n_active_in):
                i = active_in[ii]
                _add_dots(acc, h[i * bs_in : (i + 1) * bs_in], tiles[j, i], 0, bs_in)
            for c in range(bs_out):
                out[j * bs_out + c] = _activate(acc[c], activation if hidden else IDENTITY)
        h = out
        active_in = active_out
        n_active_in = n_active_out
