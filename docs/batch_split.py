"""Where one batch of the issue's gated net (3072-640-640-10, 64-unit blocks, 18 % of them: the record
issue 22's batch-50 target is about) spends its time: the whole forward, and each of its block products
alone on the masks that forward drew (the policies' scores, the layers, the output), in one process,
interleaved medians, one thread; the first layer also with bfloat16 panels. What the whole forward
takes beyond its products is mostly the products' own cost on fresh draws: each product here reads one
fixed set of masks, whose blocks stay in L2, where the whole forward draws new masks at every call
(RESULTS 10.17); then the decisions, the allocations, the gate scaling and the Python wrapper.

    .venv/bin/python docs/batch_split.py [BATCH]    (default 50)
"""

import sys

import numpy as np

from condnet.bench.compare import synthetic_model
from condnet.engine import Engine
from condnet.engine import kernels as K
from condnet.engine.timing import interleaved_medians, machine


def layer_arrays(engine: Engine, layer: int, n_in: int):
    """(panels, bias, score panels, offsets) of a layer, as forward_batch reads them from the buffer."""
    weights, row = engine._weights, engine._meta[layer]
    bf16 = row[K.M_BF16] == 1
    n_out_blocks, bs_out = row[K.M_OUT_BLOCKS], row[K.M_BS_OUT]
    panels = K._panels(weights, row[K.M_PANELS], n_out_blocks, n_in, bs_out, 2 if bf16 else 1)
    bias = weights[row[K.M_BIAS] : row[K.M_BIAS] + n_out_blocks * bs_out]
    if row[K.M_SCORES] == 0:
        return panels, bias, None, None
    z = K._panels(weights, row[K.M_Z_PANELS], 1, n_in, row[K.M_SCORES])
    return panels, bias, z, weights[row[K.M_D] : row[K.M_D] + row[K.M_SCORES]]


def main(batch: int) -> None:
    model = synthetic_model([3072, 640, 640, 10], [64, 64], [0.18, 0.18])
    fp32, bf16 = Engine(model), Engine(model, weights="bf16")
    x = np.random.default_rng(0).random((batch, 3072), dtype=np.float32)
    _, masks = fp32.forward(x, "sample", seed=0)
    m0, m1 = (np.ascontiguousarray(m) for m in masks)
    p0, b0, z0, d0 = layer_arrays(fp32, 0, 3072)
    p0_bf16 = layer_arrays(bf16, 0, 3072)[0]
    p1, b1, z1, d1 = layer_arrays(fp32, 1, 640)
    p2, b2, _, _ = layer_arrays(fp32, 2, 640)
    ones = np.ones((batch, 1), np.uint8)
    h1, h2 = np.zeros((batch, 640), np.float32), np.zeros((batch, 640), np.float32)
    s0, s1 = np.zeros((batch, len(d0)), np.float32), np.zeros((batch, len(d1)), np.float32)
    out = np.zeros((batch, 10), np.float32)
    products = {
        "layer 0 scores": lambda: K.block_layer(x, ones, z0, d0, ones, K.IDENTITY, s0),
        "layer 0": lambda: K.block_layer(x, ones, p0, b0, m0, K.TANH, h1),
        "layer 1 scores": lambda: K.block_layer(h1, m0, z1, d1, ones, K.IDENTITY, s1),
        "layer 1": lambda: K.block_layer(h1, m0, p1, b1, m1, K.TANH, h2),
        "output": lambda: K.block_layer(h2, m1, p2, b2, ones, K.IDENTITY, out),
    }
    calls = {
        "whole forward (sample mode, as `condnet bench`)": lambda: fp32.forward(x, "sample", seed=0),
        **products,
        "layer 0, bf16 panels": lambda: K.block_layer(x, ones, p0_bf16, b0, m0, K.TANH, h1, True),
    }
    for call in calls.values():
        call()  # compile
    times = interleaved_medians(calls, 25)
    whole = times["whole forward (sample mode, as `condnet bench`)"]
    print(f"{machine()}; batch {batch}; blocks on: {m0.mean():.3f} / {m1.mean():.3f}; one thread")
    for name, seconds in times.items():
        print(f"{name}: {1e3 * seconds:.4f} ms ({seconds / whole:.0%} of the whole)")
    rest = whole - sum(times[name] for name in products)
    print(f"the rest of the whole forward: {1e3 * rest:.4f} ms ({rest / whole:.0%})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
