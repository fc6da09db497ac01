"""Where a dense layer's batch goes (RESULTS 10.22): microkernel.c's product alone (every example, one
output block, `condnet_gathered_product`), the whole layer (`kernels.block_layer`: grouping, the product,
bias, activation and the copy into the output rows) with each activation, and PyTorch's product on one
thread, on the same random weights and inputs (seed 0), interleaved medians in one process.

    python docs/dense_layer_parts.py EXAMPLES,INPUTS,OUTPUTS ...    (e.g. 256,784,16 50,3072,64)
"""

import sys

import numpy as np
import torch
from numba import njit

from condnet.engine import kernels, layout
from condnet.engine.timing import interleaved_medians, machine

torch.set_num_threads(1)
CALLS = 50  # per timed sample


@njit
def products(x, rows, panels, acc, calls):
    for _ in range(calls):
        kernels.gathered_product(x.ctypes.data, x.shape[1], rows.ctypes.data, rows.ctypes.data, x.shape[0], 0,
                                 x.shape[1], panels.ctypes.data, x.shape[1], acc.shape[1], acc.ctypes.data,
                                 acc.shape[1], 0)  # fmt: skip


def layers(x, on, panels, bias, out, activation, calls):
    for _ in range(calls):
        kernels.block_layer(x, on, panels, bias, on, activation, out)


def report(shape: str) -> None:
    m, n_in, n_out = (int(v) for v in shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    panels = layout.to_panels(w, n_out)
    acc = np.zeros((m, kernels.panel_width(n_out)), np.float32)
    rows, on = np.arange(m, dtype=np.int64), np.ones((m, 1), np.uint8)
    bias, out = np.zeros(n_out, np.float32), np.zeros((m, n_out), np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w).t()
    candidates = {"micro-kernel": lambda: products(x, rows, panels, acc, CALLS)}
    for name, code in (("tanh", kernels.TANH), ("relu", kernels.RELU), ("identity", kernels.IDENTITY)):
        candidates[f"block_layer, {name}"] = lambda code=code: layers(x, on, panels, bias, out, code, CALLS)
    candidates["torch.mm"] = lambda: [None for _ in range(CALLS) if torch.mm(xt, wt) is None]
    for candidate in candidates.values():
        candidate()  # compiled before timing
    print(f"{m} x {n_in} x {n_out}")
    for name, seconds in interleaved_medians(candidates, repeats=21).items():
        per_call = seconds / CALLS
        print(f"  {name}: {1e6 * per_call:.1f} us ({m * n_in * n_out / per_call / 1e9:.0f} GMAC/s)")


print(f"{machine()}; one thread; median of 21 interleaved repeats of {CALLS} calls")
for shape in sys.argv[1:]:
    report(shape)
