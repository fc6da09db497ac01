"""Where a gated net's batch-1 call goes (issue 22), on a synthetic net (random weights, every policy
giving each block probability DENSITY), one core, interleaved medians in one process:
1. the call at densities 0, DENSITY and 1: a line through them is the fixed cost plus the weights read;
2. at density 0, `Engine.forward` against the compiled kernel it calls: the Python wrapper's cost;
3. the first layer's product over DENSITY of its output blocks, as the engine computes it at batch 1
   (numba dot products on tiles) and through microkernel.c's one-example step on panels.

    python docs/batch1_parts.py [ARCH] [BLOCK] [DENSITY]    (default: 3072,640,640,10 64 0.18)
"""

import sys

import numpy as np
from numba import njit

from condnet.bench.compare import synthetic_model
from condnet.engine import Engine, kernels, layout
from condnet.engine.timing import interleaved_medians, machine

arch = [int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "3072,640,640,10").split(",")]
block = int(sys.argv[2]) if len(sys.argv) > 2 else 64
density = float(sys.argv[3]) if len(sys.argv) > 3 else 0.18
CALLS = 200
rng = np.random.default_rng(0)
xs = [rng.standard_normal((1, arch[0])).astype(np.float32) for _ in range(CALLS)]
blocks = [block] * (len(arch) - 2)
engines = {d: Engine(synthetic_model(arch, blocks, [d] * len(blocks))) for d in (0.0, density, 1.0)}
idle = engines[0.0]


def report(title, candidates, per):
    print(title)
    for name, seconds in interleaved_medians(candidates, repeats=21).items():
        print(f"  {name}: {1e6 * seconds / per:.2f} us")


print(f"{machine()}; {arch}, blocks of {block}; median of 21 interleaved repeats")
report(
    "1. a call (sample mode, a new input each call)",
    {f"density {d}": lambda e=e: [e.forward(x, "sample") for x in xs] for d, e in engines.items()},
    CALLS,
)
report("2. density 0: the wrapper and the kernel it calls", {
    "Engine.forward": lambda: [idle.forward(x, "sample") for x in xs],
    "kernels.forward_one": lambda: [kernels.forward_one(x, idle._weights, idle._meta, idle._work, idle._flags,
                                                        kernels.OWN_SAMPLE) for x in xs],
}, CALLS)  # fmt: skip

n_out = arch[1]
weight = rng.standard_normal((n_out, arch[0])).astype(np.float32)
tiles = layout.to_tiles(weight, arch[0], block)[:, 0]  # (output blocks, block, inputs)
panels = layout.to_panels(weight, block)
width = kernels.panel_width(block)
on = np.sort(rng.choice(n_out // block, max(1, round(density * (n_out // block))), replace=False))


@njit(fastmath=True, error_model="numpy")
def by_tiles(x, tiles, on, out, reps):
    for _ in range(reps):
        for j in on:
            out[j] = 0.0
            kernels._add_dots(out[j], x[0], tiles[j], 0, x.shape[1])


@njit(fastmath=True, error_model="numpy")
def by_panels(x, panels, on, out, reps, width):
    row = np.zeros(1, np.int64)
    n_in = x.shape[1]
    for _ in range(reps):
        for j in on:
            out[j] = 0.0
            kernels.gathered_product(
                x.ctypes.data,
                n_in,
                row.ctypes.data,
                row.ctypes.data,
                1,
                0,
                n_in,
                panels[j].ctypes.data,
                n_in,
                width,
                out[j].ctypes.data,
                width,
                0,
            )


x = xs[0]
out_tiles = np.zeros((n_out // block, block), np.float32)
out_panels = np.zeros((n_out // block, width), np.float32)
by_tiles(x, tiles, on, out_tiles, 1)
by_panels(x, panels, on, out_panels, 1, width)
assert np.allclose(out_tiles, out_panels[:, :block], rtol=1e-4, atol=1e-3), "the two products disagree"
megabytes = len(on) * block * arch[0] * 4 / 1e6
report(f"3. the first layer's product: {len(on)} of {n_out // block} output blocks, {megabytes:.2f} MB", {
    "tiles (the engine)": lambda: by_tiles(x, tiles, on, out_tiles, CALLS),
    "panels (microkernel.c, one example)": lambda: by_panels(x, panels, on, out_panels, CALLS, width),
}, CALLS)  # fmt: skip
