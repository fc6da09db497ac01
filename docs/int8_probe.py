"""Would int8 weights (one scale per output row, widened to float32 as they are read) beat bfloat16 in
the engine? Issue 22 asks for int8 "if it measures faster". This measures the batch-1 product, the
path where the bytes read decide the time: one example through `active` of `total` tiles of
(rows x n_in) weights, each call a different run of tiles (so a footprint larger than the caches
streams), dot products 4 rows at a time as `kernels._add_dots` does, in fp32, bf16 and int8, in one
process (interleaved medians, one thread). The per-row scale (one multiply per output) is left out:
it favours int8.

    .venv/bin/python docs/int8_probe.py N_IN ROWS ACTIVE TOTAL    (e.g. 3072 64 2 10: the first layer
                                                                   of gated 3072-640-640-10 at 18 %)
"""

import sys

import numpy as np
from numba import njit

from condnet.engine.kernels import _as_float32
from condnet.engine.layout import to_bf16
from condnet.engine.timing import interleaved_medians, machine


@njit(fastmath=True, error_model="numpy", inline="always")
def fp32(w, a):
    return w[a]


@njit(fastmath=True, error_model="numpy", inline="always")
def bf16(w, a):
    return _as_float32(np.uint32(w[a]) << np.uint32(16))


@njit(fastmath=True, error_model="numpy", inline="always")
def int8(w, a):
    return np.float32(w[a])


def product_of(weight):
    """acc[j, c] = x . tiles[j, c] for every tile j and row c, reading weights through `weight`."""

    @njit(fastmath=True, error_model="numpy")
    def product(x, tiles, acc):
        for j in range(tiles.shape[0]):
            t = tiles[j]
            for c in range(0, t.shape[0], 4):
                s0 = s1 = s2 = s3 = np.float32(0.0)
                r0, r1, r2, r3 = t[c], t[c + 1], t[c + 2], t[c + 3]
                for a in range(x.shape[0]):
                    v = x[a]
                    s0 += v * weight(r0, a)
                    s1 += v * weight(r1, a)
                    s2 += v * weight(r2, a)
                    s3 += v * weight(r3, a)
                acc[j, c], acc[j, c + 1], acc[j, c + 2], acc[j, c + 3] = s0, s1, s2, s3

    return product


def main(n_in: int, rows: int, active: int, total: int) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((total, rows, n_in)).astype(np.float32)
    as_bf16 = to_bf16(w).view(np.uint16)[: w.size].reshape(w.shape)  # the engine's rounding
    as_int8 = np.round(w / (np.abs(w).max(axis=2, keepdims=True) / 127)).astype(np.int8)
    x = rng.standard_normal(n_in).astype(np.float32)
    acc = np.zeros((active, rows), np.float32)
    starts = rng.integers(0, total - active + 1, 64)
    kinds = {"fp32": (fp32, w), "bf16": (bf16, as_bf16), "int8": (int8, as_int8)}
    calls = {}
    for name, (weight, tiles) in kinds.items():
        product = product_of(weight)
        product(x, tiles[:active], acc)  # compile
        calls[name] = lambda product=product, tiles=tiles: [
            product(x, tiles[s : s + active], acc) for s in starts
        ]
    times = interleaved_medians(calls, 15)
    print(f"{machine()}; {active} of {total} tiles of {rows} x {n_in}")
    for name, (_, tiles) in kinds.items():
        seconds = times[name] / len(starts)
        weights = active * rows * n_in
        gbps = weights * tiles.itemsize / seconds / 1e9
        print(f"{name}: {1e6 * seconds:.2f} us per example, {gbps:.1f} GB/s, {weights / seconds / 1e9:.1f} G "
              f"weights/s, {times['bf16'] / times[name]:.2f}x bf16's speed")  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
