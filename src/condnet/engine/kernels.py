"""Block-sparse CPU kernels (numba, and one C micro-kernel): only active output blocks are computed,
only active input blocks read. Two entry points each run a whole network in one call: `forward_one`
(batch 1) and `forward_batch`.

Layouts (made once by `condnet.engine.layout`, both in one flat buffer): a dense input or output is one
block that is always on.
- Batch 1 reads tiles `tiles[j, i] = W[j-th output block, i-th input block]`, (bs_out, bs_in),
  contiguous: a unit's value is a sum of dot products of two contiguous vectors, 4 units per loop
  (LLVM keeps the partial sums of a vectorized dot product in registers). At batch 1 the weights are
  a stream and this keeps up with it (as fast as a C GEMV with prefetching, measured).
- Batches read panels (`layout.to_panels`): the examples that switched output block j on share its
  tiles, and microkernel.c computes them together, 6 examples x 16 outputs per step (12 x 16 or 8 x 32
  with AVX-512) with the sums in registers, which numba cannot do (its batched dot-product kernel ran at
  ~21 GMAC/s on a 3072 x 640 layer at batch 50; the micro-kernel at 42-48 on AVX2, and with AVX-512 at
  the speed of a tuned product on large dense layers). Grouping the examples by block is done here, from
  the masks.

Weights are float32, or bfloat16 (meta column M_BF16; layout.to_bf16): both entry points widen them to
float32 as they read them, and every sum is float32. Or int8 (M_INT8; layout.int8_rows): each layer's
input is quantized per example to 8 bits and the products are integer sums (int8_dots.c at batch 1,
int8_product.c for batches: on quads of inputs with AVX-512 VNNI, layout.int8_quads, else on pairs,
layout.int8_panels).

Every fast kernel compiles with error_model="numpy": under numba's default ("python") a float division
checks its divisor and raises ZeroDivisionError, a branch that stops LLVM from vectorizing the loop
around it, here the division in tanh (measured: 12,800 tanh 26 us scalar, 3.7 us vectorized).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from condnet.engine import native  # noqa: F401  (loads the micro-kernel before any kernel links to it)

TANH, RELU, IDENTITY = 0, 1, 2
# how masks are decided; OWN_SAMPLE (batch 1 only): SAMPLE with numba's own generator, drawn in the
# kernel (a numpy draw of the noise costs about 2 us a call, as much as a small network's arithmetic)
THRESHOLD, SAMPLE, GIVEN, OWN_SAMPLE = 0, 1, 2, 3


@njit(cache=True)
def count_nonfinite(x):
    """How many entries of x (2-D, float32, C-contiguous) are NaN or infinite: those whose exponent
    bits are all ones. Integer tests, so a fastmath caller cannot assume them away, and they vectorize."""
    bits = x.reshape(-1).view(np.uint32)
    count = 0
    for i in range(bits.shape[0]):
        count += (bits[i] & 0x7F800000) == 0x7F800000
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


@njit(inline="always", fastmath=True, error_model="numpy")
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


@njit(inline="always", fastmath=True, error_model="numpy")
def _finish_block(values, bias, activation):
    """values[c] = f(values[c] + bias[c]) over a block, in place (1-D views). One loop per activation, so
    each vectorizes: a branch on the activation inside the loop kept it scalar (6x slower on 50 x 256
    tanh), and so would a separate source array (LLVM's overlap check fails when it is the same one)."""
    if activation == TANH:
        for c in range(values.shape[0]):
            values[c] = tanh(values[c] + bias[c])
    elif activation == RELU:
        for c in range(values.shape[0]):
            values[c] = max(values[c] + bias[c], np.float32(0.0))
    else:
        for c in range(values.shape[0]):
            values[c] += bias[c]


@njit(inline="always", fastmath=True, error_model="numpy")
def _tanh_rows(acc, n, bs, bias):
    """acc[e, c] = tanh(acc[e, c] + bias[c]) for e < n, c < bs, in place (acc: C-contiguous, rows of width
    >= bs). Where the rows are bs wide, tanh runs over the n rows as one flat loop after the bias: LLVM
    vectorizes a loop of few iterations poorly, and rows of 16 took 2.9x the time (256 x 16; 50 x 64:
    1.4x)."""
    if acc.shape[1] == bs:
        for e in range(n):
            for c in range(bs):
                acc[e, c] += bias[c]
        flat = acc.reshape(acc.size)[: n * bs]  # a view: reshape refuses a non-contiguous acc
        for i in range(flat.shape[0]):
            flat[i] = tanh(flat[i])
    else:
        for e in range(n):
            for c in range(bs):
                acc[e, c] = tanh(acc[e, c] + bias[c])


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are `bits` (a uint32): a bitcast, which LLVM vectorizes."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


def _weight(w, a):
    """w[a] as a float32: float32 weights as they are, bfloat16 ones (uint16: the upper half of a
    float32) shifted into place, exactly."""


@overload(_weight, inline="always")
def _weight_of(w, a):
    if w.dtype == types.uint16:
        return lambda w, a: _as_float32(np.uint32(w[a]) << np.uint32(16))
    return lambda w, a: w[a]


@njit(inline="always", fastmath=True, error_model="numpy")
def _dot(x, w):
    total = np.float32(0.0)
    for a in range(x.shape[0]):
        total += x[a] * _weight(w, a)
    return total


@njit(inline="always", fastmath=True, error_model="numpy")
def _dot_1x4(x, w0, w1, w2, w3):
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for a in range(x.shape[0]):
        v = x[a]
        s0 += v * _weight(w0, a)
        s1 += v * _weight(w1, a)
        s2 += v * _weight(w2, a)
        s3 += v * _weight(w3, a)
    return s0, s1, s2, s3


@njit(inline="always", fastmath=True, error_model="numpy")
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


# int8_dots.c's product: acc[c] += x . w[c] for the `rows` rows of w (int8, rows x n), x int16, acc int32.
# Arguments: x, w, n, rows, acc; arrays as addresses.
int8_dots = types.ExternalFunction(
    "condnet_int8_dots", types.void(types.intp, types.intp, types.int64, types.int64, types.intp)
)
# and max |x[a]| over n float32 values at address x
largest_magnitude = types.ExternalFunction(
    "condnet_largest_magnitude", types.float32(types.intp, types.int64)
)

# int8_product.c's product for batches: acc[accrows[r]] += x[xrows[r], col0 : col0 + k] @ panels[col0 : col0
# + k] in int32 for r < m (x int16, panels int8 as layout.int8_panels lays them out). Arguments: x, ldx,
# xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc; arrays as addresses, leading dimensions in
# elements; n_in, col0 and k even.
int8_product = types.ExternalFunction(
    "condnet_int8_product",
    types.void(types.intp, types.int64, types.intp, types.intp, types.int64, types.int64, types.int64,
               types.intp, types.int64, types.int64, types.intp, types.int64),
)  # fmt: skip

# and its quads product (AVX-512 VNNI's vpdpbusd: 8-bit inputs, panels as layout.int8_quads lays them out):
# the same arguments, x int8, panels uint8 (w + 128), n_in, col0 and k multiples of 4; it adds 128 x the
# sum of each example's inputs, which the caller takes off
int8_quads_product = types.ExternalFunction(
    "condnet_int8_quads_product",
    types.void(types.intp, types.int64, types.intp, types.intp, types.int64, types.int64, types.int64,
               types.intp, types.int64, types.int64, types.intp, types.int64),
)  # fmt: skip
# the int8 product's version in use (3: AVX-512 VNNI, 4: AMX: batches then read the quads; native.int8_path)
int8_path = types.ExternalFunction("condnet_int8_path", types.int32(types.int32))
VNNI, AMX = 3, 4

# microkernel.c's product, called by name (condnet.engine.native has loaded it): acc[accrows[r]] +=
# x[xrows[r], col0 : col0 + k] @ panels[col0 : col0 + k] for r < m. Arguments: x, ldx, xrows, accrows, m,
# col0, k, panels, n_in, width, acc, ldacc, bf16; arrays as addresses (array.ctypes.data), leading
# dimensions in floats; bf16 1: the panels are bfloat16.
gathered_product = types.ExternalFunction(
    "condnet_gathered_product",
    types.void(types.intp, types.int64, types.intp, types.intp, types.int64, types.int64, types.int64,
               types.intp, types.int64, types.int64, types.intp, types.int64, types.int64),
)  # fmt: skip
# shared_product.c: the same product on `threads` threads, each taking chunks of the outputs (the last
# argument: threads; 1 is gathered_product itself)
shared_product = types.ExternalFunction(
    "condnet_shared_product",
    types.void(types.intp, types.int64, types.intp, types.intp, types.int64, types.int64, types.int64,
               types.intp, types.int64, types.int64, types.intp, types.int64, types.int64, types.int64),
)  # fmt: skip
# and a gated layer's products on `threads` threads, each taking whole output blocks: for each block j,
# acc[j, :n] = the sums (before bias) of the n examples whose block j is on, in order. Arguments: x, ldx,
# in_mask, its row stride, out_mask, its row stride, batch, n_in_blocks, n_in, n_out_blocks, width,
# panels, bytes per output block, acc (n_out_blocks, batch, width), bf16, scratch (threads x 3 x batch
# int64), threads.
block_products = types.ExternalFunction(
    "condnet_block_products",
    types.void(types.intp, types.int64, types.intp, types.int64, types.intp, types.int64, types.int64,
               types.int64, types.int64, types.int64, types.int64, types.intp, types.int64, types.intp,
               types.int64, types.intp, types.int64),
)  # fmt: skip


@njit(inline="always")
def _group(out_mask, j, rows):
    """rows[:n] = the examples whose output block j is on; returns n."""
    n = 0
    for b in range(out_mask.shape[0]):
        if out_mask[b, j]:
            rows[n] = b
            n += 1
    return n


@njit(inline="always")
def _subgroup(in_mask, i, rows, n, xrows, accrows):
    """Of the group rows[:n], the examples whose input block i is on: xrows[:m] (their rows of the
    input) and accrows[:m] (their places in the group); returns m."""
    m = 0
    for e in range(n):
        if in_mask[rows[e], i]:
            xrows[m] = rows[e]
            accrows[m] = e
            m += 1
    return m


@njit(inline="always", fastmath=True, error_model="numpy")
def _output_block(
    x, in_mask, panels, bf16, bias, out_mask, activation, out, j, rows, xrows, accrows, acc, threads=1
):
    """Compute output block j for the examples whose block j is on (rows, xrows, accrows, acc: scratch);
    returns how many of them have a non-finite sum (see `block_layer`). threads > 1: each product is
    shared between that many threads by its outputs (shared_product.c).

    For each active input block i, the group's examples with block i on are one call of the
    micro-kernel, which adds their product with tile (j, i) to their rows of acc. (Tried and dropped:
    one call over every input for the whole group when the tiles are small, since x is 0 in inactive
    blocks: on 3072-256-512-10's 16 x 16 tiles at batch 50 and density 0.18, the second layer took
    52 us that way, 38 us tile by tile.)"""
    n_in_blocks, n_in = in_mask.shape[1], x.shape[1]
    bs_in, width, bs_out = n_in // n_in_blocks, acc.shape[1], out.shape[1] // panels.shape[0]
    bf16_code = np.int64(1 if bf16 else 0)
    n = _group(out_mask, j, rows)
    if n == 0:
        return 0
    # one output block that every example switched on (a dense layer): rows[e] == e, so the sums go
    # straight into out's rows, zero-filled by the caller, with no scratch to clear and copy back
    # (1-3 % of a wide dense layer's time; RESULTS 10.23)
    direct = n == x.shape[0] and panels.shape[0] == 1 and width == out.shape[1]
    sums = out if direct else acc
    if not direct:
        acc[:n] = 0.0
    x_at, ldx, panels_at, acc_at = x.ctypes.data, x.strides[0] // 4, panels[j].ctypes.data, sums.ctypes.data
    ldacc = sums.strides[0] // 4
    for i in range(n_in_blocks):
        m = _subgroup(in_mask, i, rows, n, xrows, accrows)
        if m > 0:
            rows_at, sums_at = xrows.ctypes.data, accrows.ctypes.data
            col0 = i * bs_in
            if threads > 1:
                shared_product(x_at, ldx, rows_at, sums_at, m, col0, bs_in, panels_at, n_in, width, acc_at,
                               ldacc, bf16_code, threads)  # fmt: skip
            else:
                gathered_product(x_at, ldx, rows_at, sums_at, m, col0, bs_in, panels_at, n_in, width, acc_at,
                                 ldacc, bf16_code)  # fmt: skip
    if direct:
        return _finish_in_place(out, n, bias, activation)
    return _finish_output_block(acc, rows, n, j, bs_out, bias, activation, out)


@njit(inline="always", fastmath=True, error_model="numpy")
def _finish_in_place(out, n, bias, activation):
    """out[e] = f(out[e] + bias) for e < n (rows as wide as the bias); returns how many of the n sums are
    NaN or infinite."""
    non_finite = _non_finite_rows(out, n)
    width = bias.shape[0]
    if activation == TANH:
        _tanh_rows(out, n, width, bias)
    elif activation == RELU:
        for e in range(n):
            for c in range(width):
                out[e, c] = max(out[e, c] + bias[c], np.float32(0.0))
    else:
        for e in range(n):
            for c in range(width):
                out[e, c] += bias[c]
    return non_finite


@njit(inline="always")
def _non_finite_rows(sums, n):
    """How many of the first n rows of sums start with NaN or an infinity (a non-finite input makes every
    sum it enters non-finite). Integer tests: a fastmath caller may assume floats finite."""
    bits = sums[:n, 0].view(np.uint32)
    non_finite = 0
    for e in range(n):
        non_finite += (bits[e] & 0x7F800000) == 0x7F800000
    return non_finite


@njit(inline="always", fastmath=True, error_model="numpy")
def _finish_output_block(acc, rows, n, j, bs_out, bias, activation, out):
    """out[rows[e], block j] = f(acc[e] + bias of block j) for e < n (blocks of bs_out); returns how many
    of the n sums are NaN or infinite."""
    c0 = j * bs_out
    non_finite = _non_finite_rows(acc, n)
    bias = bias[c0 : c0 + bs_out]
    # index loops: a slice per example cost more than its copy (~50 ns each); one loop nest per
    # activation, so each vectorizes (see _finish_block); relu and identity in the copy itself
    if activation == TANH:
        _tanh_rows(acc, n, bs_out, bias)
        for e in range(n):
            r = rows[e]
            for c in range(bs_out):
                out[r, c0 + c] = acc[e, c]
    elif activation == RELU:
        for e in range(n):
            r = rows[e]
            for c in range(bs_out):
                out[r, c0 + c] = max(acc[e, c] + bias[c], np.float32(0.0))
    else:
        for e in range(n):
            r = rows[e]
            for c in range(bs_out):
                out[r, c0 + c] = acc[e, c] + bias[c]
    return non_finite


@njit(inline="always")
def int8_padded(n_in, bs_in, multiple=2):
    """Inputs of an int8 layer's panels and quantized batch: each input block padded to a multiple of 2
    (int8_product.c's pairs) or 4 (its quads)."""
    return n_in // bs_in * (-(-bs_in // multiple) * multiple)


@njit(inline="always", fastmath=True, error_model="numpy")
def _quantize_rows(x, in_mask, quantized, scales, offsets, summed):
    """Each example's active input blocks as integers of at most int8_input_bound, one scale per example:
    the batch-1 rule of `_blocks_one_int8`, row by row, into quantized (batch, int8_padded) int16 or int8,
    each block's pad set to 0 (inactive blocks are left as they are: the product skips them); scales[b]
    receives the example's scale and, if summed, offsets[b] 128 x the sum of its integers (what the quads
    product adds)."""
    batch, n_in, n_in_blocks = x.shape[0], x.shape[1], in_mask.shape[1]
    bs_in = n_in // n_in_blocks
    padded = quantized.shape[1] // n_in_blocks
    bound = np.float32(int8_input_bound(n_in))
    for b in range(batch):
        largest = np.float32(0.0)
        for i in range(n_in_blocks):
            if in_mask[b, i]:
                largest = max(largest, largest_magnitude(x[b, i * bs_in :].ctypes.data, bs_in))
        scales[b], inverse = int8_input_scales(largest, bound)
        # the integers' sum in float32 is exact (below 127 x 66,000 < 2^24, in any order) and vectorizes
        total = np.float32(0.0)
        for i in range(n_in_blocks):
            if in_mask[b, i]:
                values, integers = x[b, i * bs_in :], quantized[b, i * padded : (i + 1) * padded]
                if summed:
                    for a in range(bs_in):
                        rounded = np.rint(values[a] * inverse)
                        integers[a] = np.int32(rounded)
                        total += rounded
                else:
                    for a in range(bs_in):
                        integers[a] = np.int32(np.rint(values[a] * inverse))
                for a in range(bs_in, padded):
                    integers[a] = 0
        offsets[b] = 128 * np.int64(total)


@njit(fastmath=True, error_model="numpy", cache=True)
def block_layer_int8(x, in_mask, panels, quads, row_scales, bias, out_mask, activation, out):
    """block_layer for an int8 layer: each example's input quantized as at batch 1 (`_quantize_rows`), its
    products exact int32 sums (int8_product.c: on quads of 8-bit inputs where the CPU has AVX-512 VNNI,
    else on pairs of 16-bit ones), scaled per output by the example's scale times the row's as
    `_blocks_one_int8` scales them, so that a batch gives each example's batch-1 outputs. panels, quads:
    the layer's `layout.int8_panels` and `layout.int8_quads`, (n_out_blocks, panel width * padded inputs
    / 4) float32 slots holding bytes; row_scales: (n_out,) float32. Returns how many (example, output
    block) sums are NaN or infinite (a non-finite input makes its example's scale so)."""
    batch, n_in, n_in_blocks, n_out_blocks = x.shape[0], x.shape[1], in_mask.shape[1], panels.shape[0]
    bs_in, bs_out = n_in // n_in_blocks, out.shape[1] // n_out_blocks
    width = panel_width(bs_out)
    on_quads = int8_path(0) >= VNNI
    multiple = 4 if on_quads else 2
    ldx = int8_padded(n_in, bs_in, multiple)
    step = ldx // n_in_blocks
    pairs_x = np.empty((batch if not on_quads else 0, ldx), np.int16)
    quads_x = np.empty((batch if on_quads else 0, ldx), np.int8)
    scales, offsets = np.empty(batch, np.float32), np.zeros(batch, np.int64)
    if on_quads:
        _quantize_rows(x, in_mask, quads_x, scales, offsets, True)
    else:  # the pairs product adds nothing: offsets 0
        _quantize_rows(x, in_mask, pairs_x, scales, offsets, False)
    rows, xrows, accrows, acc = _scratch(batch, width)
    sums = np.empty((batch, width), np.int32)
    sums_at = sums.ctypes.data
    non_finite = 0
    for j in range(n_out_blocks):
        n = _group(out_mask, j, rows)
        if n == 0:
            continue
        sums[:n] = 0
        for i in range(n_in_blocks):
            m = _subgroup(in_mask, i, rows, n, xrows, accrows)
            if m > 0:
                # the inputs' addresses taken here, where the arrays are used: numba frees an array after
                # its last use, and an address taken before the loop pointed at freed memory (tested)
                rows_at, places_at = xrows.ctypes.data, accrows.ctypes.data
                if on_quads:
                    int8_quads_product(quads_x.ctypes.data, ldx, rows_at, places_at, m, i * step, step,
                                       quads[j].ctypes.data, ldx, width, sums_at, width)  # fmt: skip
                else:
                    int8_product(pairs_x.ctypes.data, ldx, rows_at, places_at, m, i * step, step,
                                 panels[j].ctypes.data, ldx, width, sums_at, width)  # fmt: skip
        for e in range(n):
            int8_scaled(sums[e], offsets[rows[e]], scales[rows[e]], row_scales[j * bs_out : (j + 1) * bs_out],
                        acc[e, :bs_out])  # fmt: skip
        non_finite += _finish_output_block(acc, rows, n, j, bs_out, bias, activation, out)
    return non_finite


@njit(fastmath=True, error_model="numpy", parallel=True, cache=True)
def block_layer_int8_parallel(
    x, in_mask, panels, quads, row_scales, bias, out_mask, activation, out, threads
):
    """block_layer_int8 on `threads` threads, each taking a slice of consecutive examples (each reads the
    layer's active panels: a quarter of float32's bytes)."""
    batch, non_finite = x.shape[0], 0
    for t in prange(threads):
        lo, hi = t * batch // threads, (t + 1) * batch // threads
        non_finite += block_layer_int8(
            x[lo:hi], in_mask[lo:hi], panels, quads, row_scales, bias, out_mask[lo:hi], activation, out[lo:hi]
        )
    return non_finite


@njit(inline="always")
def _scratch(batch, width):
    """rows, xrows, accrows and acc of `_output_block`."""
    index = np.empty((3, batch), np.int64)
    return index[0], index[1], index[2], np.empty((batch, width), np.float32)


@njit(fastmath=True, error_model="numpy", cache=True)
def block_layer(x, in_mask, panels, bias, out_mask, activation, out, bf16=False, threads=1):
    """out[b, block j] = f(sum over active input blocks i of x[b, block i] @ W[block j, block i]^T + bias)
    where out_mask[b, j]; out must be zero-filled by the caller (inactive blocks stay exactly 0, and a
    layer of one block that every example switched on adds its sums into it). Returns how many
    (example, output block) sums are NaN or infinite. The micro-kernel keeps IEEE arithmetic, so a NaN
    or infinite input in an active input block makes every sum it enters non-finite (inf * 0 is NaN):
    this checks the input of the first layer without a pass of its own (on 256 x 784 inputs, a separate
    check took 44 us when they come from memory, a third of the forward).

    x: (batch, n_in) float32 with contiguous rows; in_mask: (batch, n_in_blocks) uint8; panels: the
    layer's weights as `layout.to_panels` lays them out, (n_out_blocks, panel width * n_in);
    bias: (n_out,); out_mask: (batch, n_out_blocks) uint8; out: (batch, n_out); bf16: the panels' memory
    holds bfloat16 weights (the view's float32 columns are then pairs of them); threads: see
    `_output_block`.
    """
    rows, xrows, accrows, acc = _scratch(x.shape[0], panel_width(out.shape[1] // panels.shape[0]))
    non_finite = 0
    for j in range(panels.shape[0]):
        non_finite += _output_block(
            x, in_mask, panels, bf16, bias, out_mask, activation, out, j, rows, xrows, accrows, acc, threads
        )
    return non_finite


@njit(inline="always")
def _by_blocks(n_out_blocks, threads):
    """Whether block_layer_parallel's threads take whole output blocks (else slices of the examples)."""
    return n_out_blocks >= 4 * threads


@njit(fastmath=True, error_model="numpy", parallel=True, cache=True)
def block_layer_parallel(x, in_mask, panels, bias, out_mask, activation, out, threads, bf16=False):
    """block_layer on `threads` threads. With many output blocks, the threads take whole output blocks
    (each group of examples stays whole, so its tiles are read once) on shared_product.c's helpers,
    whose wake-up the caller never waits for, then this thread finishes the rows; with few (a policy or
    a dense layer is a single block), each thread takes a slice of consecutive examples (when few
    examples read a dense layer, `_product` shares its outputs between threads instead).
    """
    batch, n_out_blocks = x.shape[0], panels.shape[0]
    bs_out = out.shape[1] // n_out_blocks
    width = panel_width(bs_out)
    non_finite = 0
    if _by_blocks(n_out_blocks, threads):
        sums = np.empty((n_out_blocks, batch, width), np.float32)
        scratch = np.empty((threads, 3, batch), np.int64)
        block_products(x.ctypes.data, x.strides[0] // 4, in_mask.ctypes.data, in_mask.strides[0],
                       out_mask.ctypes.data, out_mask.strides[0], batch, in_mask.shape[1], x.shape[1],
                       n_out_blocks, width, panels.ctypes.data, panels.strides[0], sums.ctypes.data,
                       np.int64(1 if bf16 else 0), scratch.ctypes.data, threads)  # fmt: skip
        rows = scratch[0, 0]
        for j in range(n_out_blocks):
            n = _group(out_mask, j, rows)
            non_finite += _finish_output_block(sums[j], rows, n, j, bs_out, bias, activation, out)
        return non_finite
    for t in prange(threads):
        lo, hi = t * batch // threads, (t + 1) * batch // threads
        non_finite += block_layer(
            x[lo:hi], in_mask[lo:hi], panels, bias, out_mask[lo:hi], activation, out[lo:hi], bf16
        )
    return non_finite


@njit(inline="always", fastmath=True, error_model="numpy")
def _probability(logit, p_min, p_max):
    """sigma = sigmoid(logit) clipped to [p_min, p_max] as the model does (p_min + (p_max - p_min) s)."""
    return p_min + (p_max - p_min) / (np.float32(1.0) + np.exp(-logit))


@njit(inline="always")
def _switched_on(sigma, mode, noise):
    """The one rule for a block: on iff sigma > 0.5 (THRESHOLD) or noise < sigma (SAMPLE)."""
    return sigma > 0.5 if mode == THRESHOLD else noise < sigma


@njit(inline="always")
def _noise(mode, noise, j):
    """Block j's uniform draw: numba's generator in mode OWN_SAMPLE, the caller's noise[j] in mode SAMPLE
    (other modes read none: their noise may be empty)."""
    if mode == OWN_SAMPLE:
        return np.float32(np.random.random())
    return noise[j] if mode == SAMPLE else np.float32(0.0)


# Batch 1 (latency): the whole network in one call, so no Python runs between layers, with as few
# arguments as possible: numba's dispatcher checks the type of every argument on every call (0.17 us
# for one array, 0.73 us for twelve, measured), and at batch 1 that is a large share of the call.
# Every layer lives in the flat `weights` buffer described by one row of `meta`:
M_IN_BLOCKS, M_BS_IN, M_OUT_BLOCKS, M_BS_OUT, M_TILES, M_BIAS, M_ACTIVATION = range(7)
M_DECISION, M_ARG = 7, 8  # how the layer decides its blocks (DECISIONS) and that decision's argument
M_Z, M_D, M_SCORES, M_RATE = 9, 10, 11, 12  # score weights (tiles) and offsets, their rows; a fixed rate
M_PANELS, M_Z_PANELS = 13, 14  # the tiles and Z as the batched micro-kernel reads them (layout.to_panels)
# what the scores read (condnet.gates.View: VIEW_*), as M_Z_BLOCKS blocks of M_Z_BS values (the layer's
# input blocks, or one block of the network's input or of its view), and the pooled view's shape:
# the input's channels and side, and the pooled side
M_VIEW, M_Z_BLOCKS, M_Z_BS, M_VIEW_CHANNELS, M_VIEW_SIDE, M_VIEW_POOLED = 15, 16, 17, 18, 19, 20
M_BF16 = 21  # 1: the layer's tiles and panels are bfloat16, two to a float32 slot of the buffer
# a computed view's length (pooled or projected; 0: none) and, in row 0 only, a projection's weights
# (rows of the input's length: batch 1), their panels (batches) and its bias
M_VIEW_SIZE, M_VIEW_WEIGHTS, M_VIEW_PANELS, M_VIEW_BIAS = 22, 23, 24, 25
# 1: the layer's tiles and panels are int8, four to a float32 slot, row o of W scaled by M_SCALES[o]
# (layout.int8_rows; its panels as layout.int8_panels lays them out, and again as layout.int8_quads)
M_INT8, M_SCALES, M_QUADS = 26, 27, 28
META_COLUMNS = 29
VIEW_LAYER, VIEW_INPUT, VIEW_POOL, VIEW_PROJ = 0, 1, 2, 3
VIEWS = {"layer": VIEW_LAYER, "input": VIEW_INPUT, "pool": VIEW_POOL, "proj": VIEW_PROJ}
NONE = -1  # no score weights (M_Z, M_D, M_Z_PANELS), no fixed rate (M_RATE), no panels or no scales
# The decisions a hidden layer can make (condnet.gates: each gate's `lower` names one):
# DENSE: every block; UNIFORM: each block on with the fixed rate (bdNN); POLICY: each block on with
# sigma = p_min + (p_max - p_min) sigmoid(score) (the paper); TOPK: the ARG largest scores, scaled by
# their softmax; TREE: a binary tree of depth ARG over the node scores, the leaf scaled by its path
# probability; HASH: ARG tables of plane scores, each picking the block its signs spell (condnet.gates.hash);
# SWITCH: TOPK's blocks, scaled by their softmax over every block.
DENSE, UNIFORM, POLICY, TOPK, TREE, HASH, SWITCH = range(7)
DECISIONS = {"dense": DENSE, "uniform": UNIFORM, "policy": POLICY, "topk": TOPK, "tree": TREE, "hash": HASH,
             "switch": SWITCH}  # fmt: skip
SCALED = (TOPK, TREE, SWITCH)  # decisions whose blocks are scaled by gate values
P_MIN, P_MAX = 0, 1  # weights[0:2]: the policies' probability range
NON_FINITE_INPUT = 1  # forward_one's status when x holds NaN or infinities


@njit(inline="always")
def _top_k(scores, k, on):
    """on[j] = 1 for the k largest scores (the first of equal ones), 0 elsewhere."""
    on[:] = 0
    for _ in range(k):
        best = -1
        for j in range(scores.shape[0]):
            if not on[j] and (best < 0 or scores[j] > scores[best]):
                best = j
        on[best] = 1


@njit(inline="always")
def _gates(scores, on):
    """In place: the softmax of the scores over the blocks on (condnet.nn.gates.topk.gate_values); the
    values of blocks off are not read."""
    peak = -np.inf
    for j in range(scores.shape[0]):
        if on[j] and scores[j] > peak:
            peak = scores[j]
    total = 0.0
    for j in range(scores.shape[0]):
        if on[j]:
            scores[j] = np.exp(scores[j] - peak)
            total += scores[j]
    for j in range(scores.shape[0]):
        if on[j]:
            scores[j] /= total


@njit(inline="always")
def _softmax(scores):
    """In place: the softmax of the scores over every block (condnet.nn.gates.switch.gate_values)."""
    peak = scores.max()
    total = 0.0
    for j in range(scores.shape[0]):
        scores[j] = np.exp(scores[j] - peak)
        total += scores[j]
    for j in range(scores.shape[0]):
        scores[j] /= total


@njit(inline="always")
def _path_probability(nodes, depth, leaf):
    """A tree router's probability of reaching `leaf`: the product along its path of sigmoid(score)
    going right and 1 - sigmoid(score) going left (condnet.nn.gates.tree.leaf_probabilities)."""
    position, level, probability = 0, 0, np.float32(1.0)
    for t in range(depth):
        right = (leaf >> (depth - 1 - t)) & 1
        p_right = np.float32(1.0) / (np.float32(1.0) + np.exp(-nodes[level + position]))
        probability *= p_right if right else np.float32(1.0) - p_right
        position = 2 * position + right
        level = 2 * level + 1
    return probability


@njit(inline="always")
def _tree_decide(nodes, depth, mode, on, gates):
    """One example: its leaf (right wherever a node's score is > 0; mode GIVEN keeps `on`), and
    gates[leaf] = the path probability of every leaf on."""
    if mode != GIVEN:
        position, level = 0, 0
        for _ in range(depth):
            position = 2 * position + (1 if nodes[level + position] > 0 else 0)
            level = 2 * level + 1
        on[:] = 0
        on[position] = 1
    for leaf in range(on.shape[0]):
        if on[leaf]:
            gates[leaf] = _path_probability(nodes, depth, leaf)


@njit(inline="always")
def _hash_blocks(scores, k, on):
    """on[j] = 1 for the blocks of k hash tables (condnet.gates.hash): table t's block has bit i set
    where scores[t * bits + i] > 0, modulo the blocks; a block already on moves to the next free one."""
    n, bits = on.shape[0], scores.shape[0] // k
    on[:] = 0
    for t in range(k):
        block = 0
        for i in range(bits):
            if scores[t * bits + i] > 0:
                block |= 1 << i
        block %= n
        while on[block]:
            block = (block + 1) % n
        on[block] = 1


@njit(inline="always")
def _decide(code, arg, scores, rate, p_min, p_max, mode, noise, on, gates):
    """The one decision rule of a hidden layer, for one example, used by both entry points: on[j] = 1
    for the blocks to compute (mode GIVEN: `on` holds the caller's mask and is kept) and, for SCALED
    decisions, gates[j] = what block j's output is scaled by (read only where on[j]).

    code, arg: M_DECISION, M_ARG; scores: the layer's scores for this example (POLICY: logits; TOPK,
    SWITCH: scores, overwritten by the gate values; TREE: every node's score; others: not read); rate:
    the fixed rate (UNIFORM); noise: the block draws (mode SAMPLE; OWN_SAMPLE draws here). The same
    float32 sigma as the model's policy. (The batch-1 kernel walks a tree's path itself, computing only
    its nodes' scores: `_tree_leaf`.)"""
    if code == TOPK or code == SWITCH:
        if mode != GIVEN:
            _top_k(scores, arg, on)
        if code == TOPK:
            _gates(scores, on)
        else:
            _softmax(scores)
        for j in range(on.shape[0]):
            gates[j] = scores[j]
    elif code == TREE:
        _tree_decide(scores, arg, mode, on, gates)
    elif mode == GIVEN:
        return
    elif code == HASH:
        _hash_blocks(scores, arg, on)
    elif code == POLICY:
        for j in range(on.shape[0]):
            on[j] = _switched_on(_probability(scores[j], p_min, p_max), mode, _noise(mode, noise, j))
    elif code == UNIFORM:
        for j in range(on.shape[0]):
            on[j] = _switched_on(rate, mode, _noise(mode, noise, j))
    else:
        on[:] = 1


# The decisions are compiled apart from the fastmath kernels, which would inline them with their flags
# (exp overflows to inf for very negative scores and must stay inf), and here, with one signature each:
# left to compile on first use, they took the flags of the fastmath kernel that called them (numba issue
# #7168; 113 fastmath instructions each in a fresh install). A call of a compiled function with array
# arguments costs about 150 ns (measured: 40 us a layer at batch 256), so the batch path makes one call
# per layer, not one per example.
@njit("void(int64, int64, float32[::1], float32, float32, float32, int64, float32[::1], uint8[::1], "
      "float32[::1])", cache=True)  # fmt: skip
def decide_example(code, arg, scores, rate, p_min, p_max, mode, noise, on, gates):
    """`_decide` for one example (batch 1)."""
    _decide(code, arg, scores, rate, p_min, p_max, mode, noise, on, gates)


@njit("void(int64, int64, float32[:, ::1], float32, float32, float32, int64, float32[:, ::1], uint8[:, :], "
      "float32[:, ::1])", cache=True)  # fmt: skip
def decide_examples(code, arg, scores, rate, p_min, p_max, mode, noise, on, gates):
    """`_decide` for every example, row b of scores, on, gates; noise: (batch, >= n_blocks) draws, read in
    mode SAMPLE by the decisions that draw (it may be empty for the others)."""
    if code == DENSE and mode != GIVEN:  # no views per example: each costs ~80 ns (reference counts)
        on[:, :] = 1
        return
    no_draws = np.zeros(0, np.float32)
    for b in range(on.shape[0]):
        draws = noise[b, : on.shape[1]] if mode == SAMPLE and noise.shape[0] > b else no_draws
        _decide(code, arg, scores[b], rate, p_min, p_max, mode, draws, on[b], gates[b])


@njit(inline="always")
def _tree_leaf(h, in_mask, weights, row, all_on, depth, leaf, gates):
    """Walk a tree router from its root: to `leaf` (>= 0), or (leaf -1) right wherever a node's score is
    > 0. Computes only the nodes on the path (depth dot products over the active inputs), writes the
    path probability (product of sigmoid(score) right, 1 - sigmoid(score) left) to gates[leaf] and
    returns the leaf."""
    n_in_blocks, bs_in, n_nodes = row[M_Z_BLOCKS], row[M_Z_BS], row[M_SCORES]
    z = weights[row[M_Z] : row[M_Z] + n_in_blocks * n_nodes * bs_in].reshape((n_in_blocks, n_nodes, bs_in))
    position, level, probability = 0, 0, np.float32(1.0)
    for t in range(depth):
        node = level + position
        score = weights[row[M_D] + node]
        for i in range(n_in_blocks):
            if all_on or in_mask[i]:
                for u in range(bs_in):
                    score += h[i * bs_in + u] * z[i, node, u]
        if leaf < 0:
            right = 1 if score > 0 else 0
        else:
            right = (leaf >> (depth - 1 - t)) & 1
        p_right = np.float32(1.0) / (np.float32(1.0) + np.exp(-score))
        probability *= p_right if right else np.float32(1.0) - p_right
        position = 2 * position + right
        level = 2 * level + 1
    gates[position] = probability
    return position


@njit(inline="always", cache=True)  # cached: the engine calls it from Python at every start
def work_layout(meta):
    """Offsets in forward_one's float32 work buffer: noise (n_hidden x max_blocks), logits, two hidden
    vectors, the accumulator of one output block, a layer's scores, its gate values, the view of the
    input every gate reads and an int8 layer's quantized input (int16, two to a slot); and its size."""
    n_hidden = meta.shape[0] - 1
    max_blocks, max_width, max_in, max_bs_out, max_scores, view_size = 1, 1, 1, 1, 1, 1
    for layer in range(meta.shape[0]):
        view_size = max(view_size, meta[layer, M_VIEW_SIZE])
        max_width = max(max_width, meta[layer, M_OUT_BLOCKS] * meta[layer, M_BS_OUT])
        max_in = max(max_in, meta[layer, M_IN_BLOCKS] * meta[layer, M_BS_IN])
        max_bs_out = max(max_bs_out, meta[layer, M_BS_OUT])
        if layer < n_hidden:
            max_blocks = max(max_blocks, meta[layer, M_OUT_BLOCKS])
            max_scores = max(max_scores, meta[layer, M_SCORES])
    logits = n_hidden * max_blocks
    h_a = logits + meta[n_hidden, M_OUT_BLOCKS] * meta[n_hidden, M_BS_OUT]
    h_b = h_a + max_width
    acc = h_b + max_width
    scores = acc + max_bs_out
    gates = scores + max_scores
    view = gates + max_blocks
    quantized = view + view_size
    return max_blocks, logits, h_a, h_b, acc, scores, gates, view, quantized, quantized + (max_in + 1) // 2


@njit(inline="always")
def _pool_view(x, row, out):
    """out = x (channels x side x side, channel-major) average-pooled to channels x pooled x pooled: the
    mean of each f x f square, f = side / pooled (torch's avg_pool2d: the sum, then one division)."""
    channels, side, pooled = row[M_VIEW_CHANNELS], row[M_VIEW_SIDE], row[M_VIEW_POOLED]
    f = side // pooled
    for c in range(channels):
        for i in range(pooled):
            for j in range(pooled):
                total = np.float32(0.0)
                for a in range(f):
                    start = c * side * side + (i * f + a) * side + j * f
                    for b in range(f):
                        total += x[start + b]
                out[(c * pooled + i) * pooled + j] = total / np.float32(f * f)


@njit(inline="always")
def _view_one(x, weights, row, out):
    """out = the view every gate reads (lowering gives every hidden layer's row the same view, and row
    0 the projection's arrays), computed once per example: pooled, projected or none."""
    if row[M_VIEW] == VIEW_POOL:
        _pool_view(x, row, out)
    elif row[M_VIEW] == VIEW_PROJ:
        size, n = row[M_VIEW_SIZE], x.shape[0]
        out[:size] = weights[row[M_VIEW_BIAS] : row[M_VIEW_BIAS] + size]
        w = weights[row[M_VIEW_WEIGHTS] : row[M_VIEW_WEIGHTS] + size * n].reshape((size, n))
        _add_dots(out[:size], x, w, 0, n)


@njit(inline="always", fastmath=True, error_model="numpy")
def _blocks_one(tiles, h, in_mask, all_in, on, hidden, scaled, gates, bias, activation, acc_all, out):
    """forward_one's product: out's active blocks (all of them for the output layer) from h's active
    blocks (all_in: every input block), through tiles (n_out_blocks, n_in_blocks, bs_out, bs_in) of
    float32 or bfloat16 weights (numba compiles one loop for each)."""
    n_out_blocks, n_in_blocks, bs_out, bs_in = tiles.shape
    acc = acc_all[:bs_out]
    for j in range(n_out_blocks):
        if hidden and not on[j]:
            continue
        acc[:] = 0.0
        for i in range(n_in_blocks):
            if all_in or in_mask[i]:
                _add_dots(acc, h[i * bs_in : (i + 1) * bs_in], tiles[j, i], 0, bs_in)
        block = out[j * bs_out : (j + 1) * bs_out]
        block[:] = acc
        _finish_block(block, bias[j * bs_out : (j + 1) * bs_out], activation)
        if hidden and scaled:
            block *= gates[j]


@njit(inline="always")
def int8_input_bound(n_in):
    """The largest |value| of an int8 layer's quantized input: 127 (8 bits, what VNNI's vpdpbusd
    multiplies), or less where a row's sum of n_in products of it and a weight shifted by 128 (the quads
    product's, at most 255) could overflow int32 (from 66,000 inputs)."""
    return min(127, (2**31 - 1) // (255 * n_in))


FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


# Not fastmath, not inlined, and compiled here with one signature each: under fastmath LLVM may turn a
# division into a multiplication by the reciprocal in one caller and not in another (the batch kernel then
# gave its examples other int8 outputs than batch 1: 1 ulp in a scale, which moved a rounding of the next
# layer's input, 1e-5 in the logits). Inlined, they take the caller's flags; left to compile on first use,
# they take the flags of whichever fastmath kernel compiles first (numba issue #7168).
@njit("UniTuple(float32, 2)(float32, float32)", error_model="numpy", cache=True)
def int8_input_scales(largest, bound):
    """(scale, inverse) of an int8 layer's input whose largest |value| is `largest`: x ~= scale * q with
    q = rint(x * inverse), |q| <= bound. An input of zeros has scale 0 (every product 0), and so has one
    too small for a finite inverse (below bound / FLT_MAX: it rounds to zeros); an overflowed (infinite)
    one gives infinite or NaN outputs, as float32 does."""
    # compared before dividing, not by testing the quotient for infinity: that test was folded away while
    # fastmath kernels compiled this function with their flags (RESULTS 10.21; no longer, 10.22)
    if largest > 0 and largest <= bound / FLOAT32_MAX:
        return np.float32(0.0), np.float32(0.0)
    return largest / bound, (bound / largest if largest > 0 else np.float32(0.0))


@njit("void(int32[::1], int64, float32, float32[::1], float32[::1])", error_model="numpy", cache=True)
def int8_scaled(sums, offset, scale, row_scales, out):
    """out[c] = (sums[c] - offset) * (scale * row_scales[c]) over a block, sums int32 (see
    int8_input_scales; offset: what the quads product added)."""
    for c in range(out.shape[0]):
        out[c] = np.float32(sums[c] - offset) * (scale * row_scales[c])


@njit(inline="always", fastmath=True, error_model="numpy")
def _blocks_one_int8(tiles, scales, h, in_mask, all_in, on, hidden, scaled, gates, bias, activation, acc_all,
                     quantized, out):  # fmt: skip
    """_blocks_one through int8 tiles (n_out_blocks, n_in_blocks, bs_out, bs_in): h's active blocks are
    quantized to integers of at most int8_input_bound (one scale for the example's layer input, rounded to
    nearest, ties to even), every tile row's product is an exact int32 sum (int8_dots.c), scaled once
    per output by the input's scale times the row's."""
    n_out_blocks, n_in_blocks, bs_out, bs_in = tiles.shape
    largest = np.float32(0.0)
    for i in range(n_in_blocks):
        if all_in or in_mask[i]:
            largest = max(largest, largest_magnitude(h[i * bs_in :].ctypes.data, bs_in))
    scale, inverse = int8_input_scales(largest, np.float32(int8_input_bound(n_in_blocks * bs_in)))
    for i in range(n_in_blocks):
        if all_in or in_mask[i]:
            # a loop over slices from 0, whose indices LLVM knows are not negative (numba's wraparound of
            # h[a] for a in range(i * bs_in, ...) kept it scalar: 3 us over 3072 inputs)
            values, integers = h[i * bs_in : (i + 1) * bs_in], quantized[i * bs_in : (i + 1) * bs_in]
            for a in range(bs_in):
                integers[a] = np.int16(np.rint(values[a] * inverse))
    acc = acc_all[:bs_out].view(np.int32)
    acc_at = acc.ctypes.data
    for j in range(n_out_blocks):
        if hidden and not on[j]:
            continue
        acc[:] = 0
        for i in range(n_in_blocks):
            if all_in or in_mask[i]:
                int8_dots(quantized[i * bs_in :].ctypes.data, tiles[j, i].ctypes.data, bs_in, bs_out, acc_at)
        block = out[j * bs_out : (j + 1) * bs_out]
        int8_scaled(acc, np.int64(0), scale, scales[j * bs_out : (j + 1) * bs_out], block)
        _finish_block(block, bias[j * bs_out : (j + 1) * bs_out], activation)
        if hidden and scaled:
            block *= gates[j]


@njit(fastmath=True, error_model="numpy", cache=True)  # compiled below, for its one signature
def forward_one(x, weights, meta, work, flags, mode):
    """One example through every layer, reading and computing only active blocks; returns a status
    (0, or NON_FINITE_INPUT when x holds NaN or infinities, and nothing is computed).

    x: (1, input_dim) float32. weights: [p_min, p_max], then every layer's tiles, bias, Z tiles, d and
    tau (float32). meta: (n_layers, META_COLUMNS) int64 offsets, shapes and activation (see M_*); the
    last row is the output layer. work: float32 buffer laid out by `work_layout`: the caller writes the
    noise (mode SAMPLE: block on iff noise < sigma; OWN_SAMPLE draws it here) and reads the logits.
    flags: (2, n_hidden, max_blocks) uint8: flags[0] the given masks (mode GIVEN), flags[1] receives
    the decisions.
    Views of `weights` are reshaped to their tile shapes: indexed that way, LLVM vectorizes the
    inner loops (flat index arithmetic defeats it, about 6x slower).
    """
    if count_nonfinite(x) > 0:
        return NON_FINITE_INPUT
    n_layers = meta.shape[0]
    max_blocks, o_logits, o_a, o_b, o_acc, o_scores, o_gates, o_view, o_quantized, end = work_layout(meta)
    p_min, p_max = weights[P_MIN], weights[P_MAX]
    given, decided = flags[0], flags[1]
    acc_all = work[o_acc:o_scores]
    h = x[0]
    in_mask = decided[0, :1]  # placeholder; the input is one block, always on
    view_values = work[o_view:o_quantized]
    quantized = work[o_quantized:end].view(np.int16)
    _view_one(x[0], weights, meta[0], view_values)
    for layer in range(n_layers):
        n_in_blocks, bs_in = meta[layer, M_IN_BLOCKS], meta[layer, M_BS_IN]
        n_out_blocks, bs_out = meta[layer, M_OUT_BLOCKS], meta[layer, M_BS_OUT]
        hidden = layer < n_layers - 1
        code = meta[layer, M_DECISION] if hidden else DENSE
        scaled = code in SCALED
        # decide which output blocks to compute: decided[layer] (the output layer is always on)
        if hidden:
            on = decided[layer, :n_out_blocks]
            gates = work[o_gates : o_gates + n_out_blocks]
            if mode == GIVEN:
                on[:] = given[layer, :n_out_blocks]
            # what the scores read: this layer's input (its active blocks), or the input or its view
            view = meta[layer, M_VIEW]
            src = h if view == VIEW_LAYER else (x[0] if view == VIEW_INPUT else view_values)
            all_on = layer == 0 or view != VIEW_LAYER
            if code == TREE:  # at batch 1 a tree computes only the nodes on the path: its own walk
                depth, row = meta[layer, M_ARG], meta[layer]
                if mode != GIVEN:
                    on[:] = 0
                    on[_tree_leaf(src, in_mask, weights, row, all_on, depth, -1, gates)] = 1
                else:  # the path probability of every leaf that is on
                    for j in range(n_out_blocks):
                        if on[j]:
                            _tree_leaf(src, in_mask, weights, row, all_on, depth, j, gates)
            else:
                n_scores = meta[layer, M_SCORES]
                scores = work[o_scores : o_scores + n_scores]
                if n_scores > 0 and (mode != GIVEN or scaled):
                    z0, d0 = meta[layer, M_Z], meta[layer, M_D]
                    z_blocks, z_bs = meta[layer, M_Z_BLOCKS], meta[layer, M_Z_BS]
                    z = weights[z0 : z0 + z_blocks * n_scores * z_bs].reshape((z_blocks, n_scores, z_bs))
                    scores[:] = weights[d0 : d0 + n_scores]
                    for i in range(z_blocks):
                        if all_on or in_mask[i]:
                            _add_dots(scores, src[i * z_bs : (i + 1) * z_bs], z[i], 0, z_bs)
                rate = weights[meta[layer, M_RATE]] if meta[layer, M_RATE] != NONE else np.float32(0.0)
                noise = work[layer * max_blocks : layer * max_blocks + n_out_blocks]
                decide_example(code, meta[layer, M_ARG], scores, rate, p_min, p_max, mode, noise, on, gates)
        # the product: active output blocks from active input blocks; other outputs are never read
        if hidden:
            start = o_a if layer % 2 == 0 else o_b
            out = work[start : start + n_out_blocks * bs_out]
        else:
            out = work[o_logits : o_logits + n_out_blocks * bs_out]
        t0, size = meta[layer, M_TILES], n_out_blocks * n_in_blocks * bs_out * bs_in
        shape = (n_out_blocks, n_in_blocks, bs_out, bs_in)
        bias = weights[meta[layer, M_BIAS] : meta[layer, M_BIAS] + n_out_blocks * bs_out]
        # (on and gates: the last hidden layer's at the output layer, which reads neither; layer 0 is hidden)
        activation, first = meta[layer, M_ACTIVATION], layer == 0
        if meta[layer, M_INT8]:
            tiles8 = weights[t0 : t0 + (size + 3) // 4].view(np.int8)[:size].reshape(shape)
            s0 = meta[layer, M_SCALES]
            scales = weights[s0 : s0 + n_out_blocks * bs_out]
            _blocks_one_int8(tiles8, scales, h, in_mask, first, on, hidden, scaled, gates, bias, activation,
                             acc_all, quantized, out)  # fmt: skip
        elif meta[layer, M_BF16]:
            tiles16 = weights[t0 : t0 + (size + 1) // 2].view(np.uint16)[:size].reshape(shape)
            _blocks_one(tiles16, h, in_mask, first, on, hidden, scaled, gates, bias, activation, acc_all, out)
        else:
            tiles = weights[t0 : t0 + size].reshape(shape)
            _blocks_one(tiles, h, in_mask, first, on, hidden, scaled, gates, bias, activation, acc_all, out)
        h = out
        if hidden:
            in_mask = decided[layer]
    return 0


# Batches: the whole network in one call too (Python between layers cost 10-20 us a call, more than the
# arithmetic of a small network at batch 50). Each layer's policy and product are block products
# through the micro-kernel; the decisions are those of the batch-1 kernel, one example at a time.


@njit(inline="always")
def _idle_rows_non_finite(x, on):
    """Whether an example whose first layer computes no block (so the products did not check its
    input; a NaN input gives NaN policy scores, which switch blocks off) has a NaN or infinite input."""
    for b in range(x.shape[0]):
        idle = True
        for j in range(on.shape[1]):
            if on[b, j]:
                idle = False
        if idle and count_nonfinite(x[b : b + 1]) > 0:
            return True
    return False


# A product takes several threads only from this many multiply-adds: waking the other threads costs
# 20-45 us a parallel region on this project's VMs when idle threads sleep (OMP_WAIT_POLICY=PASSIVE,
# which `condnet bench` sets), so smaller products ran slower on two threads than on one (784-64-10
# at batch 50: 83 us on two threads, 70 on one).
PARALLEL_MIN_WORK = 3_000_000
# or, for a dense layer (one block) read by a few examples, from this many weights: its time is then
# the weights' bytes over the bandwidth, and each thread reads its share of them (shared_product.c,
# which never waits for a sleeping thread: at batch 1, 784 x 784 took 37 us on two threads, 42 on one;
# 1024 x 512, 2 MB, which one core's L2 holds, no gain; RESULTS 10.17)
PARALLEL_MIN_WEIGHTS = 600_000
# examples: from this many, a dense layer's product splits the examples between threads (OpenMP) instead:
# from 16 examples the split by outputs gained less than OpenMP's threads do when they spin between calls
# (libgomp's default; RESULTS 10.17)
SPLIT_OUTPUTS_BELOW = 16
# That split of the examples (and any layer of fewer than 4 output blocks per thread, a policy's scores)
# is an OpenMP region (block_layer_parallel), whose sleeping thread took 70-80 us to wake on the Xeon VM
# of RESULTS 10.22: two threads were slower than one up to 20 M multiply-adds (784-16-10 at batch 256,
# 3.2 M: 140 us against 61), level at 26 M; hence its own threshold. The threads that take many output
# blocks (shared_product.c's pool) are not waited for, and keep PARALLEL_MIN_WORK.
PARALLEL_SPLIT_MIN_WORK = 24_000_000
# An int8 layer splits its examples between threads (an OpenMP region) from this many multiply-adds:
# its products run 2-4x as fast as float32's, and on that Xeon VM waking a sleeping OpenMP thread took
# ~100-150 us. Measured with the 16-bit product (RESULTS 10.18): at 5-31 M multiply-adds two threads were
# slower than one (gated 3072-640-640-10 at 18 %, batch 16: 0.38 ms against 0.18), from 90 M faster; with
# VNNI's quads level at 40-60 M (one dense layer, RESULTS 10.21). On AMX's tiles, twice as fast again,
# two threads were 1.3-1.5x slower than one at 50-67 M and level only at 80-105 M: hence its own threshold.
INT8_PARALLEL_MIN_WORK = 48_000_000
INT8_AMX_PARALLEL_MIN_WORK = 100_000_000


@njit(inline="always")
def int8_parallel_min_work():
    """The multiply-adds from which an int8 layer splits its examples between threads, for the int8
    product in use."""
    return INT8_AMX_PARALLEL_MIN_WORK if int8_path(0) == AMX else INT8_PARALLEL_MIN_WORK


@njit(inline="always")
def _active_work(in_mask, out_mask, n_in, n_out):
    """The multiply-adds of a block product: active input x active output units, summed over examples."""
    bs_in, bs_out, work = n_in // in_mask.shape[1], n_out // out_mask.shape[1], 0
    for b in range(in_mask.shape[0]):
        inputs, outputs = 0, 0
        for i in range(in_mask.shape[1]):
            inputs += in_mask[b, i] != 0
        for j in range(out_mask.shape[1]):
            outputs += out_mask[b, j] != 0
        work += inputs * bs_in * outputs * bs_out
    return work


ONE_THREAD, SHARED_OUTPUTS, PARALLEL = 0, 1, 2


@njit(inline="always")
def product_threads(n_out_blocks, batch, n_in, n_out, work, threads):
    """How a float32 block product of `work` active multiply-adds uses `threads`: ONE_THREAD;
    SHARED_OUTPUTS (a dense layer read by few examples: shared_product.c's threads take chunks of its
    outputs); PARALLEL (block_layer_parallel: whole output blocks, or slices of the examples)."""
    if threads <= 1:
        return ONE_THREAD
    if n_out_blocks == 1 and batch < SPLIT_OUTPUTS_BELOW:
        if work >= PARALLEL_MIN_WORK or n_in * n_out >= PARALLEL_MIN_WEIGHTS:
            return SHARED_OUTPUTS
        return ONE_THREAD
    if work >= (PARALLEL_MIN_WORK if _by_blocks(n_out_blocks, threads) else PARALLEL_SPLIT_MIN_WORK):
        return PARALLEL
    return ONE_THREAD


@njit(inline="always")
def _product(x, in_mask, panels, bias, out_mask, activation, out, threads, bf16):
    work = _active_work(in_mask, out_mask, x.shape[1], out.shape[1]) if threads > 1 else 0
    how = product_threads(panels.shape[0], x.shape[0], x.shape[1], out.shape[1], work, threads)
    if how == SHARED_OUTPUTS:
        return block_layer(x, in_mask, panels, bias, out_mask, activation, out, bf16, threads)
    if how == PARALLEL:
        return block_layer_parallel(x, in_mask, panels, bias, out_mask, activation, out, threads, bf16)
    return block_layer(x, in_mask, panels, bias, out_mask, activation, out, bf16)


@njit(cache=True)  # cached: layout.to_panels calls it from Python at every start
def panel_width(bs_out):
    """Outputs the micro-kernel computes for a block of bs_out: rounded up to whole 8-wide vectors."""
    return (bs_out + 7) // 8 * 8


@njit(inline="always")
def _panels(weights, start, n_out_blocks, n_in, bs_out, per_slot=1):
    """A (n_out_blocks, panel width * n_in / per_slot) view of the flat buffer (layout.to_panels): per_slot
    weights in each float32 column (2: bfloat16; 4: int8, layout.int8_panels, n_in padded)."""
    size = panel_width(bs_out) * n_in // per_slot  # one output block
    return weights[start : start + n_out_blocks * size].reshape((n_out_blocks, size))


@njit(fastmath=True, error_model="numpy", cache=True)
def forward_batch(x, weights, meta, noise, masks, mode, threads):
    """A batch through every layer; returns (status, logits): status 0, or NON_FINITE_INPUT when x holds
    NaN or infinities (found by the first layer's products, which then stop the forward).

    x: (batch, input_dim) float32, C-contiguous. weights, meta: as for forward_one (panels at M_PANELS,
    M_Z_PANELS). noise: (n_hidden, batch, max_blocks) float32 uniform draws, read in mode SAMPLE only.
    masks: (n_hidden, batch, max_blocks) uint8: the given masks in mode GIVEN, else written; either way
    it holds the masks used. mode: THRESHOLD, SAMPLE or GIVEN. threads: numba threads of the products.
    """
    batch, n_layers = x.shape[0], meta.shape[0]
    last = meta[n_layers - 1]
    logits = np.zeros((batch, last[M_OUT_BLOCKS] * last[M_BS_OUT]), np.float32)
    p_min, p_max = weights[P_MIN], weights[P_MAX]
    all_on = np.ones((batch, 1), np.uint8)
    view_row = meta[0]  # the view every gate reads (see _view_one)
    view_values = np.zeros((batch, view_row[M_VIEW_SIZE]), np.float32)  # zeros: block_layer adds into it
    if view_row[M_VIEW] == VIEW_POOL:
        for b in range(batch):
            _pool_view(x[b], view_row, view_values[b])
    elif view_row[M_VIEW] == VIEW_PROJ:  # a product with one output block, always on
        projection = _panels(weights, view_row[M_VIEW_PANELS], 1, x.shape[1], view_row[M_VIEW_SIZE])
        bias = weights[view_row[M_VIEW_BIAS] : view_row[M_VIEW_BIAS] + view_row[M_VIEW_SIZE]]
        _product(x, all_on, projection, bias, all_on, IDENTITY, view_values, threads, False)
    h, in_mask = x, all_on
    for layer in range(n_layers):
        row = meta[layer]
        n_in_blocks, bs_in = row[M_IN_BLOCKS], row[M_BS_IN]
        n_out_blocks, bs_out = row[M_OUT_BLOCKS], row[M_BS_OUT]
        hidden = layer < n_layers - 1
        code = row[M_DECISION] if hidden else DENSE
        scaled = code in SCALED
        on = masks[layer, :, :n_out_blocks] if hidden else all_on
        # the scores: a product with one output block, always on (a tree's nodes, a top-k's scores)
        n_scores = row[M_SCORES] if hidden else 0
        scores = np.zeros((batch, n_scores), np.float32)
        if n_scores > 0 and (mode != GIVEN or scaled):  # from this layer's input, or the input or its view
            view = row[M_VIEW]
            src = h if view == VIEW_LAYER else (x if view == VIEW_INPUT else view_values)
            src_mask = in_mask if view == VIEW_LAYER else all_on
            z = _panels(weights, row[M_Z_PANELS], 1, row[M_Z_BLOCKS] * row[M_Z_BS], n_scores)
            d = weights[row[M_D] : row[M_D] + n_scores]
            _product(src, src_mask, z, d, all_on, IDENTITY, scores, threads, False)
        # which blocks are on, and the gate values that scale them (the batch-1 rule, example by example)
        gates = np.empty((batch, n_out_blocks), np.float32)
        if hidden:
            rate = weights[row[M_RATE]] if row[M_RATE] != NONE else np.float32(0.0)
            decide_examples(code, row[M_ARG], scores, rate, p_min, p_max, mode, noise[layer], on, gates)
        out = np.zeros((batch, n_out_blocks * bs_out), np.float32) if hidden else logits
        bf16 = row[M_BF16] == 1
        bias = weights[row[M_BIAS] : row[M_BIAS] + n_out_blocks * bs_out]
        if row[M_INT8] == 1:
            n_in = n_in_blocks * bs_in
            panels = _panels(weights, row[M_PANELS], n_out_blocks, int8_padded(n_in, bs_in), bs_out, 4)
            quads = _panels(weights, row[M_QUADS], n_out_blocks, int8_padded(n_in, bs_in, 4), bs_out, 4)
            row_scales = weights[row[M_SCALES] : row[M_SCALES] + n_out_blocks * bs_out]
            activation = row[M_ACTIVATION]
            work = _active_work(in_mask, on, h.shape[1], out.shape[1]) if threads > 1 else 0
            if work >= int8_parallel_min_work():
                non_finite = block_layer_int8_parallel(
                    h, in_mask, panels, quads, row_scales, bias, on, activation, out, threads
                )
            else:
                non_finite = block_layer_int8(
                    h, in_mask, panels, quads, row_scales, bias, on, activation, out
                )
        else:
            panels = _panels(
                weights, row[M_PANELS], n_out_blocks, n_in_blocks * bs_in, bs_out, 2 if bf16 else 1
            )
            non_finite = _product(h, in_mask, panels, bias, on, row[M_ACTIVATION], out, threads, bf16)
        if layer == 0 and (non_finite > 0 or _idle_rows_non_finite(x, on)):
            return NON_FINITE_INPUT, logits
        if scaled:
            for b in range(batch):
                for j in range(n_out_blocks):
                    if on[b, j]:
                        out[b, j * bs_out : (j + 1) * bs_out] *= gates[b, j]
        h, in_mask = out, on
    return 0, logits


def _on_disk(kernel) -> bool:
    """Whether numba's disk cache holds `kernel` (True when this numba's internals cannot tell)."""
    try:
        return Path(kernel._cache._cache_file._index_path).is_file()
    except AttributeError:  # not a numba dispatcher (a test's stand-in), or another numba's internals
        return True


def batch_kernel_pending() -> bool:
    """Whether the first batch will compile forward_batch for this CPU (about a minute, once): this process
    has not compiled it and numba's disk cache does not hold it. (forward_one is compiled at import.)"""
    # asked at every batch call: `overloads` is an attribute (`signatures` builds a list), and the disk
    # is looked at only until the kernel is compiled
    return not getattr(forward_batch, "overloads", True) and not _on_disk(forward_batch)


@njit(fastmath=True, error_model="numpy", cache=True)  # compiled below, for its one signature
def forward_few(x, weights, meta, work, flags, mode, noise, decided, logits):
    """A small batch as that many forward_one calls, in one compiled call (from Python, each example's
    call and copies cost ~3 us, 13 % of a 3072-640-640-10 example at 18 %). mode GIVEN: decided holds the
    given masks; SAMPLE: noise (n_hidden, batch, max_blocks) the draws (none for routers); every mode:
    decided (n_hidden, batch, max_blocks) receives the decisions, logits (batch, n_classes) the logits.
    Returns forward_one's status at the first example that has one (nothing after it is computed)."""
    n_hidden, n_classes = flags.shape[1], logits.shape[1]
    max_blocks, o_logits = work_layout(meta)[:2]
    for b in range(x.shape[0]):
        if mode == GIVEN:
            flags[0] = decided[:, b]
        elif mode == SAMPLE and noise.size > 0:
            for i in range(n_hidden):  # the noise is the work buffer's first n_hidden x max_blocks
                work[i * max_blocks : (i + 1) * max_blocks] = noise[i, b]
        status = forward_one(x[b : b + 1], weights, meta, work, flags, mode)
        if status:
            return status
        logits[b] = work[o_logits : o_logits + n_classes]
        decided[:, b] = flags[1]
    return 0


# forward_one and forward_few have one compiled signature each, float32 2-D C-contiguous x only, so
# numba's dispatcher itself refuses any other input (TypeError; the engine then converts it) and the
# engine needs no checks of its own. They are compiled here, at import, as explicit signatures would
# be, but said first when the cache lacks one: a fresh install's first import took 40 s without a word
# (issue 23).
if not (_on_disk(forward_one) and _on_disk(forward_few)):
    logging.getLogger("condnet").warning(
        "condnet: compiling the engine's batch-1 kernels for this CPU (about 40 s, once: numba caches them)"
    )
forward_one.compile(
    "int64(float32[:, ::1], float32[::1], int64[:, ::1], float32[::1], uint8[:, :, ::1], int64)"
)
forward_one.disable_compile()
forward_few.compile(
    "int64(float32[:, ::1], float32[::1], int64[:, ::1], float32[::1], uint8[:, :, ::1], int64, "
    "float32[:, :, ::1], uint8[:, :, ::1], float32[:, ::1])"
)
forward_few.disable_compile()
