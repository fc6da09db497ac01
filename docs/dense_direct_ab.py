"""A dense layer's batch before and after RESULTS 10.23, in one process: `before` is block_layer as it was
(the sums in a scratch block, cleared first, then copied with the bias and activation into the output
rows; copied here), `after` is `kernels.block_layer` (a layer of one block that every example switched
on adds its sums straight into the output rows). Random weights and inputs of seed 0; each call gets a
zero-filled output, as forward_batch gives it; the two outputs are checked equal bit for bit first.
Interleaved medians, one thread.

    python docs/dense_direct_ab.py EXAMPLES,INPUTS,OUTPUTS ...    (e.g. 256,784,256 50,784,16)
"""

import sys

import numpy as np
from numba import njit

from condnet.engine import kernels, layout
from condnet.engine.timing import interleaved_medians, machine

CALLS = 20  # per timed sample


@njit(fastmath=True, error_model="numpy")
def before(x, on, panels, bias, activation, out):
    """The layer of one output block (every example on) as block_layer computed it before 10.23."""
    rows, xrows, accrows, acc = kernels._scratch(x.shape[0], kernels.panel_width(out.shape[1]))
    n = kernels._group(on, 0, rows)
    acc[:n] = 0.0
    m = kernels._subgroup(on, 0, rows, n, xrows, accrows)
    kernels.gathered_product(x.ctypes.data, x.strides[0] // 4, xrows.ctypes.data, accrows.ctypes.data, m, 0,
                             x.shape[1], panels[0].ctypes.data, x.shape[1], acc.shape[1], acc.ctypes.data,
                             acc.shape[1], np.int64(0))  # fmt: skip
    return kernels._finish_output_block(acc, rows, n, 0, out.shape[1], bias, activation, out)


@njit(fastmath=True, error_model="numpy")
def calls(new, x, on, panels, bias, activation, n):
    for _ in range(n):
        out = np.zeros((x.shape[0], bias.shape[0]), np.float32)
        if new:
            kernels.block_layer(x, on, panels, bias, on, activation, out)
        else:
            before(x, on, panels, bias, activation, out)


def report(shape: str) -> None:
    m, n_in, n_out = (int(v) for v in shape.split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, n_in)).astype(np.float32)
    w = (0.05 * rng.standard_normal((n_out, n_in))).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    panels, on = layout.to_panels(w, n_out), np.ones((m, 1), np.uint8)
    old, new = np.zeros((m, n_out), np.float32), np.zeros((m, n_out), np.float32)
    before(x, on, panels, bias, kernels.TANH, old)
    kernels.block_layer(x, on, panels, bias, on, kernels.TANH, new)
    assert np.array_equal(old, new), "the two layers disagree"
    print(f"{m} x {n_in} x {n_out}")
    for name, code in (("tanh", kernels.TANH), ("relu", kernels.RELU)):
        times = interleaved_medians(
            {
                "before": lambda code=code: calls(False, x, on, panels, bias, code, CALLS),
                "after": lambda code=code: calls(True, x, on, panels, bias, code, CALLS),
            },
            repeats=31,
        )
        b, a = (1e6 * times[k] / CALLS for k in ("before", "after"))
        print(f"  {name}: before {b:.1f} us, after {a:.1f} us, after / before {a / b:.3f}")


if __name__ == "__main__":
    print(f"{machine()}; one thread; median of 31 interleaved repeats of {CALLS} calls")
    for shape in sys.argv[1:]:
        report(shape)
