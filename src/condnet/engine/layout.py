"""Weights laid out once, at load time, for the block-sparse access pattern of the kernels."""

from __future__ import annotations

import numpy as np

from condnet.engine import kernels


def to_tiles(weight: np.ndarray, bs_in: int, bs_out: int) -> np.ndarray:
    """W (n_out, n_in) -> tiles (n_out_blocks, n_in_blocks, bs_out, bs_in): tiles[j, i] is W's
    (output block j, input block i) sub-matrix, contiguous."""
    n_out, n_in = weight.shape
    tiles = weight.reshape(n_out // bs_out, bs_out, n_in // bs_in, bs_in).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles, dtype=np.float32)


PANEL = 16  # outputs per panel of microkernel.c (its last panel may be 8 wide)
# Every array of the flat buffer starts on a cache line (64 bytes, 16 float32): a 16-wide panel row is
# then one line, where an unaligned one is split across two on every load.
ALIGN = 16


def to_panels(weight: np.ndarray, bs_out: int) -> np.ndarray:
    """W (n_out, n_in) -> (n_out_blocks, kernels.panel_width(bs_out) * n_in), the layout of microkernel.c: per
    output block, its rows of W transposed (inputs x outputs), padded with zero outputs to the panel
    width and cut into panels of PANEL outputs, each panel (n_in, PANEL) contiguous: the kernel reads
    any run of inputs of a panel (one input block, or all of them) as one stream."""
    n_out, n_in = weight.shape
    width = kernels.panel_width(bs_out)
    padded = np.zeros((n_out // bs_out, width, n_in), np.float32)
    padded[:, :bs_out] = weight.reshape(n_out // bs_out, bs_out, n_in)
    panels = [
        padded[:, p : p + PANEL].transpose(0, 2, 1).reshape(len(padded), -1) for p in range(0, width, PANEL)
    ]
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (to nearest, ties to even: what CPUs' conversions do), two to a
    float32 slot of the engine's buffer (the kernels read them as uint16), padded with a zero to an even
    count."""
    bits = np.ascontiguousarray(values, np.float32).ravel().view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    if rounded.size % 2:
        rounded = np.append(rounded, np.uint16(0))
    return rounded.view(np.float32)


INT8_MAX = 127


def int8_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W (n_out, n_in) -> (q, scales): q int8 with W[o] ~= scales[o] * q[o], one scale per output row
    (its largest |weight| maps to 127; rounded to nearest, ties to even); an all-zero row has scale 1, and
    so has a row so small that its scale underflows to 0 (subnormal weights: its q is then 0)."""
    weight = np.asarray(weight, np.float32)
    scales = np.abs(weight).max(axis=1) / np.float32(INT8_MAX)
    scales[scales == 0] = 1.0
    q = np.clip(np.rint(weight / scales[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scales


def packed_int8(values: np.ndarray) -> np.ndarray:
    """Whole values in int8's range (to_tiles gives them as float32), as int8, four to a float32 slot of
    the engine's buffer (the kernels read them as int8), padded with zeros to a multiple of four."""
    flat = np.ascontiguousarray(values, np.int8).ravel()
    return np.concatenate([flat, np.zeros(-flat.size % 4, np.int8)]).view(np.float32)


def int8_panels(q: np.ndarray, bs_in: int, bs_out: int) -> np.ndarray:
    """q (n_out, n_in) int8 -> (n_out_blocks, kernels.panel_width(bs_out) * n_in_even) int8, the layout of
    int8_product.c's pairs product: each input block padded with zero weights to an even size (n_in_even =
    kernels.int8_padded(n_in, bs_in) inputs), then per output block its rows padded with zero outputs to
    the panel width and cut into panels of PANEL outputs (the last one 8 wide when the width is 8 mod 16),
    each panel n_in_even / 2 rows of its outputs' weights of two consecutive inputs, side by side."""
    return _grouped_panels(q.astype(np.int16), bs_in, bs_out, 2).astype(np.int8)


def int8_quads(q: np.ndarray, bs_in: int, bs_out: int) -> np.ndarray:
    """q (n_out, n_in) int8 -> (n_out_blocks, kernels.panel_width(bs_out) * n_in_4) uint8, the layout of
    int8_product.c's quads product (AVX-512 VNNI's vpdpbusd): as `int8_panels` with 4 consecutive inputs
    per row instead of 2 (each input block padded with zero weights to a multiple of 4: n_in_4 =
    kernels.int8_padded(n_in, bs_in, 4)), every weight stored as w + 128 (unsigned)."""
    return (_grouped_panels(q.astype(np.int16), bs_in, bs_out, 4) + 128).astype(np.uint8)


def _grouped_panels(q: np.ndarray, bs_in: int, bs_out: int, group: int) -> np.ndarray:
    """int8_panels' layout with `group` consecutive inputs per output in a row (2 or 4), in q's dtype."""
    n_out, n_in = q.shape
    n_in_blocks, width = n_in // bs_in, kernels.panel_width(bs_out)
    padded_bs = -(-bs_in // group) * group
    padded = np.zeros((n_out // bs_out, width, n_in_blocks, padded_bs), q.dtype)
    padded[:, :bs_out, :, :bs_in] = q.reshape(n_out // bs_out, bs_out, n_in_blocks, bs_in)
    padded = padded.reshape(n_out // bs_out, width, n_in_blocks * padded_bs // group, group)
    # (blocks, outputs, groups, group) -> per panel (blocks, groups, outputs, group): a group's row is
    # contiguous
    panels = [
        padded[:, p : p + PANEL].transpose(0, 2, 1, 3).reshape(len(padded), -1)
        for p in range(0, width, PANEL)
    ]
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


def policy_tiles(z: np.ndarray, bs_in: int) -> np.ndarray:
    """Z (rows, n_in) -> (n_in_blocks, rows, bs_in): the score weights cut by input block."""
    k, n_in = z.shape
    return np.ascontiguousarray(z.reshape(k, n_in // bs_in, bs_in).transpose(1, 0, 2), dtype=np.float32)


def pack(layers, p_min: float, p_max: float, weights: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """[p_min, p_max] and every layer's tiles, bias, score tiles, offsets, rate and panels in one flat
    float32 buffer, and the (n_layers, kernels.META_COLUMNS) int64 table of shapes, offsets, activations
    and decisions that `kernels.forward_one` and `kernels.forward_batch` read (columns: kernels.M_*).
    Each weight is stored twice: as tiles for batch 1 (dot products over contiguous rows: a GEMV that
    streams W's rows) and as panels for batches (the micro-kernel). weights "bf16": the layers' tiles
    and panels in bfloat16 (`to_bf16`: half the bytes); "int8": the tiles and panels in int8 with one
    scale per output row (`int8_rows`: a quarter of the bytes; the panels twice, as `int8_panels` and
    `int8_quads` lay them out for int8_product.c's two products: a batch reads one of them). The scores'
    weights, biases and rates stay float32, so routing decisions move only as much as the layers'
    outputs they read."""
    parts, meta, offset = [np.float32([p_min, p_max])], [], 2

    def put(array) -> int:
        nonlocal offset
        if offset % ALIGN:
            parts.append(np.zeros(-offset % ALIGN, np.float32))
            offset += parts[-1].size
        start = offset
        parts.append(np.ascontiguousarray(array, np.float32).ravel())
        offset += parts[-1].size
        return start

    for layer in layers:
        (n_out, n_in), bs_in, bs_out = layer.weight.shape, layer.bs_in, layer.bs_out
        row = np.full(kernels.META_COLUMNS, kernels.NONE, np.int64)
        row[kernels.M_IN_BLOCKS], row[kernels.M_BS_IN] = n_in // bs_in, bs_in
        row[kernels.M_OUT_BLOCKS], row[kernels.M_BS_OUT] = n_out // bs_out, bs_out
        row[kernels.M_BF16], row[kernels.M_INT8] = int(weights == "bf16"), int(weights == "int8")
        if weights == "int8":
            q, scales = int8_rows(layer.weight)
            row[kernels.M_TILES] = put(packed_int8(to_tiles(q, bs_in, bs_out)))
            row[kernels.M_PANELS] = put(packed_int8(int8_panels(q, bs_in, bs_out)))
            row[kernels.M_QUADS] = put(packed_int8(int8_quads(q, bs_in, bs_out).view(np.int8)))
            row[kernels.M_SCALES] = put(scales)
        else:
            reduced = to_bf16 if weights == "bf16" else np.asarray
            row[kernels.M_TILES] = put(reduced(to_tiles(layer.weight, bs_in, bs_out)))
            row[kernels.M_PANELS] = put(reduced(to_panels(layer.weight, bs_out)))
        row[kernels.M_BIAS] = put(layer.bias)
        row[kernels.M_ACTIVATION] = layer.activation
        row[kernels.M_DECISION], row[kernels.M_ARG] = layer.decision, layer.arg
        row[kernels.M_SCORES] = 0
        # the scores read this layer's input blocks, or one block: the network's input or its view
        row[kernels.M_VIEW] = layer.view
        view = layer.view_shape  # (channels, side, pooled): the pooled view's, else zeros
        row[kernels.M_VIEW_CHANNELS], row[kernels.M_VIEW_SIDE], row[kernels.M_VIEW_POOLED] = view
        row[kernels.M_VIEW_SIZE] = layer.view_size
        if layer.projection is not None:  # (weight (R, n_in), bias (R,)): row 0's, read once per example
            weight, bias = layer.projection
            row[kernels.M_VIEW_WEIGHTS], row[kernels.M_VIEW_BIAS] = put(weight), put(bias)
            row[kernels.M_VIEW_PANELS] = put(to_panels(weight, weight.shape[0]))
        row[kernels.M_Z_BLOCKS], row[kernels.M_Z_BS] = row[kernels.M_IN_BLOCKS], bs_in
        if layer.z is not None:
            if layer.view != kernels.VIEW_LAYER:
                row[kernels.M_Z_BLOCKS], row[kernels.M_Z_BS] = 1, layer.z.shape[1]
            z_bs = row[kernels.M_Z_BS]
            row[kernels.M_Z], row[kernels.M_D] = put(policy_tiles(layer.z, z_bs)), put(layer.d)
            row[kernels.M_Z_PANELS] = put(to_panels(layer.z, layer.z.shape[0]))
            row[kernels.M_SCORES] = layer.z.shape[0]
        if layer.rate is not None:
            row[kernels.M_RATE] = put([layer.rate])
        meta.append(row)
    return cache_aligned(np.concatenate(parts)), np.asarray(meta, np.int64)


def cache_aligned(values: np.ndarray) -> np.ndarray:
    """A copy of the float32 1-D values whose first element starts a cache line (numpy promises 16 bytes)."""
    raw = np.empty(values.size + ALIGN, np.float32)
    start = (-raw.ctypes.data // 4) % ALIGN
    aligned = raw[start : start + values.size]
    aligned[:] = values
    return aligned
