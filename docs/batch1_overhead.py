"""Batch-1 engine latency of trained runs in threshold and sample mode, interleaved in one process (one
core): what a gated net's decisions cost beyond its arithmetic.

    OMP_NUM_THREADS=1 .venv/bin/python docs/batch1_overhead.py RUN_DIR [RUN_DIR ...]
"""

import sys

import numpy as np

from condnet.checkpoint import read_checkpoint
from condnet.engine import Engine
from condnet.engine.timing import interleaved_medians, machine

CALLS = 200
x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
candidates = {}
for run in sys.argv[1:]:
    engine = Engine(read_checkpoint(run))
    for mode in ("threshold", "sample"):
        candidates[f"{run} {mode}"] = lambda e=engine, m=mode: [e.forward(x, m) for _ in range(CALLS)]
print(f"{machine()}, one core; median of 21 interleaved repeats of {CALLS} calls")
for name, seconds in interleaved_medians(candidates, repeats=21).items():
    print(f"{name}: {1e6 * seconds / CALLS:.2f} us")
