"""One dense net's batch on one and on two engine threads (RESULTS 10.22: where a second thread pays),
and optionally ONNX Runtime's session on one and two threads, in one process, interleaved medians; idle
threads sleep (OMP_WAIT_POLICY=PASSIVE), as `condnet bench` sets. Synthetic net and inputs of seed 0.

    python docs/two_threads.py ARCH BATCH [--ort]    (e.g. 784,16,10 256)
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from condnet.bench.compare import synthetic_model  # noqa: E402
from condnet.engine import Engine  # noqa: E402
from condnet.engine.timing import interleaved_medians, machine  # noqa: E402

CALLS = 20  # per timed sample
arch, batch = [int(v) for v in sys.argv[1].split(",")], int(sys.argv[2])
model = synthetic_model(arch, [arch[1]] * (len(arch) - 2), [1.0] * (len(arch) - 2), kind="nn")
x = np.random.default_rng(0).standard_normal((batch, arch[0])).astype(np.float32)
candidates = {}
for threads in (1, 2):
    engine = Engine(model, threads=threads)
    candidates[f"engine, {threads} thread(s)"] = lambda e=engine: [
        None for _ in range(CALLS) if e.forward(x) is None
    ]
if "--ort" in sys.argv:
    from condnet.bench.onnx_twin import ort_session

    for threads in (1, 2):
        session = ort_session(model.to_checkpoint(), threads=threads, flush_subnormals=True)
        candidates[f"ORT, {threads} thread(s)"] = lambda s=session: [
            None for _ in range(CALLS) if s.run(None, {"x": x}) is None
        ]
for candidate in candidates.values():
    candidate()  # compiled and warm before timing
print(f"{machine()}; {sys.argv[1]} at batch {batch}; median of 21 interleaved repeats of {CALLS} calls")
for name, seconds in interleaved_medians(candidates, repeats=21).items():
    print(f"  {name}: {1e6 * seconds / CALLS:.1f} us")
