"""The engine's numba kernels at a git revision against the working tree's, in one process: the batch
path run on the same packed weights, inputs and draws, rounds interleaved (medians), after checking that
they give the same logits and masks. The micro-kernel is the working tree's for both (compare builds of
it with docs/microkernel_ab.sh); the weights are packed by the working tree's layout.
Usage: python docs/kernels_ab.py REV ARCH BLOCK_SIZE DENSITY [BATCHES] [THREADS],
e.g. a4fa217 784,16,10 16 1.0 8,50,256 (density 1.0: the dense net, one block per layer).
On THREADS > 1 both run on THREADS threads, and beside them each code's and ONNX Runtime's time on one
thread over its time on THREADS (the second core's gain)."""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numba's threads start, as condnet bench does
import numba
import numpy as np

from condnet.bench.compare import synthetic_model
from condnet.bench.onnx_twin import ort_session
from condnet.engine import Engine, kernels
from condnet.engine.timing import interleaved_medians, machine

rev, arch_text, block, density = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
batches = [int(b) for b in sys.argv[5].split(",")] if len(sys.argv) > 5 else [8, 50, 256]
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
source = subprocess.run(["git", "show", f"{rev}:src/condnet/engine/kernels.py"], capture_output=True,
                        text=True, check=True).stdout  # fmt: skip
path = Path(tempfile.mkdtemp()) / f"kernels_{rev}.py"
path.write_text(source)
spec = importlib.util.spec_from_file_location(path.stem, path)
before = importlib.util.module_from_spec(spec)
spec.loader.exec_module(before)

arch = [int(a) for a in arch_text.split(",")]
hidden, dense = len(arch) - 2, density >= 1.0
model = synthetic_model(arch, [block] * hidden, [density] * hidden, 0, "nn" if dense else "condnet")
engine = Engine(model, threads)
weights, meta = engine._weights, engine._meta
mode = kernels.THRESHOLD if dense else kernels.SAMPLE
print(f"{machine()}: {arch_text}, blocks {block}, density {density}, {threads} thread(s); before: {rev}, "
      "after: the working tree")  # fmt: skip
modules = {"before": before, "after": kernels}
batch_kernel = {name: module.forward_batch for name, module in modules.items()}


def timed(kernel, x, noise, masks, repeats, n_threads):
    def forward():
        numba.set_num_threads(n_threads)  # per calling thread, and the candidates differ
        for _ in range(repeats):
            kernel(x, weights, meta, noise, masks, mode, n_threads)

    return forward


def timed_ort(session, x, repeats):
    def forward():
        for _ in range(repeats):
            session.run(None, {"x": x})

    return forward


rng = np.random.default_rng(0)
for batch in batches:
    x = rng.random((batch, arch[0]), dtype=np.float32)
    noise = rng.random((hidden, batch, engine._max_blocks), dtype=np.float32)
    masks = {name: np.zeros((hidden, batch, engine._max_blocks), np.uint8) for name in modules}
    logits = [batch_kernel[n](x, weights, meta, noise, masks[n], mode, threads)[1] for n in modules]
    assert np.array_equal(*logits) and np.array_equal(*masks.values()), "the two kernels disagree"
    repeats = max(1, 2000 // batch)
    runs = {name: timed(batch_kernel[name], x, noise, masks[name], repeats, threads) for name in modules}
    if threads > 1:
        for name in modules:
            runs[f"{name}, 1 thread"] = timed(batch_kernel[name], x, noise, masks[name], repeats, 1)
        for n in (1, threads):
            runs[f"ort, {n}"] = timed_ort(ort_session(model.to_checkpoint(), n), x, repeats)
    t = {name: 1e3 * s / repeats for name, s in interleaved_medians(runs, 15).items()}
    ratio = t["before"] / t["after"]
    line = f"batch {batch:4d}: before {t['before']:.4f} ms, after {t['after']:.4f} ms: x{ratio:.2f}"
    if threads > 1:
        gain = {name: t[f"{name}, 1 thread"] / t[name] for name in modules}
        line += (f"; 1 thread over {threads}: before x{gain['before']:.2f}, after x{gain['after']:.2f}, "
                 f"ONNX Runtime x{t['ort, 1'] / t[f'ort, {threads}']:.2f}")  # fmt: skip
    print(line)
