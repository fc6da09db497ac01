"""One dense layer's product (micro-kernel panels, no gate) on one thread, on two threads as OpenMP's split
by examples (`kernels.block_layer_parallel`, a numba prange region), and on two threads as
shared_product.c's chunks of outputs (`kernels.block_layer(..., threads=2)`): interleaved medians in one
process, the same weights read again and again (from cache where they fit). The idle threads sleep
between calls (OMP_WAIT_POLICY=PASSIVE, as `condnet bench`), unless the environment sets the policy.
RESULTS 10.17.

    .venv/bin/python docs/shared_product_probe.py N_IN N_OUT [BATCH,...]    (default batch 1)
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from condnet.engine import kernels, layout  # noqa: E402
from condnet.engine.timing import interleaved_medians, machine  # noqa: E402

n_in, n_out = int(sys.argv[1]), int(sys.argv[2])
batches = [int(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "1").split(",")]
rng = np.random.default_rng(0)
panels = layout.to_panels(rng.random((n_out, n_in), dtype=np.float32), n_out)
bias = np.zeros(n_out, np.float32)


def times(batch: int) -> dict:
    """us per product of each way, interleaved medians."""
    x = rng.random((batch, n_in), dtype=np.float32)
    on, out, identity = np.ones((batch, 1), np.uint8), np.zeros((batch, n_out), np.float32), kernels.IDENTITY
    products = {
        "one thread": lambda: kernels.block_layer(x, on, panels, bias, on, identity, out),
        "two, OpenMP by examples": lambda: kernels.block_layer_parallel(
            x, on, panels, bias, on, identity, out, 2
        ),
        "two, shared_product": lambda: kernels.block_layer(x, on, panels, bias, on, identity, out, False, 2),
    }
    repeats = max(1, 2000 // batch)
    for product in products.values():
        product()  # compile
    runs = {name: (lambda p=product: [p() for _ in range(repeats)]) for name, product in products.items()}
    return {name: 1e6 * t / repeats for name, t in interleaved_medians(runs, 15).items()}


print(f"{machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {n_in} x {n_out}; us per product")
for batch in batches:
    print(f"batch {batch}: " + ", ".join(f"{name} {t:.1f}" for name, t in times(batch).items()))
