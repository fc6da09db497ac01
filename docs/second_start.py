"""How long a second process takes to be ready (issue 23): import the engine, load a run, make its first
batch-1 and batch-50 calls, with numba's cache already warm (run it twice; time the second with
`/usr/bin/time -f %e`). Usage: python docs/second_start.py [RUN_DIR] (default: runs/default)"""

import sys
import time

start = time.perf_counter()
from condnet.engine import Engine  # noqa: E402

imported = time.perf_counter()
engine = Engine.from_run(sys.argv[1] if len(sys.argv) > 1 else "runs/default")
loaded = time.perf_counter()
import numpy as np  # noqa: E402

engine.forward(np.zeros((1, engine.input_dim), np.float32))
engine.forward(np.zeros((50, engine.input_dim), np.float32))
called = time.perf_counter()
print(f"import {imported - start:.2f} s, load the run {loaded - imported:.2f} s, "
      f"first calls {called - loaded:.2f} s")  # fmt: skip
