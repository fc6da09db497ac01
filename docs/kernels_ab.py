"""The engine's numba kernels at a git revision against the working tree's, in one process: both entry
points of the batch path (`forward_batch`) run on the same packed weights, inputs and draws, rounds
interleaved (medians), after checking that they give the same logits and masks. The micro-kernel is the
working tree's for both (compare builds of it with docs/microkernel_ab.sh); the weights are packed by the
working tree's layout. Usage: python docs/kernels_ab.py REV ARCH BLOCK_SIZE DENSITY [BATCHES],
e.g. a4fa217 784,16,10 16 1.0 8,50,256 (density 1.0: the dense net, one block per layer)."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from condnet.bench.compare import synthetic_model
from condnet.engine import Engine, kernels
from condnet.engine.timing import interleaved_medians, machine

rev, arch_text, block, density = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
batches = [int(b) for b in sys.argv[5].split(",")] if len(sys.argv) > 5 else [8, 50, 256]
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
engine = Engine(model)
weights, meta = engine._weights, engine._meta
mode = kernels.THRESHOLD if dense else kernels.SAMPLE
print(f"{machine()}: {arch_text}, blocks {block}, density {density}; before: {rev}, after: the working tree")
modules = {"before": before, "after": kernels}


def timed(module, x, noise, masks, repeats):
    def forward():
        for _ in range(repeats):
            module.forward_batch(x, weights, meta, noise, masks, mode, 1)

    return forward


rng = np.random.default_rng(0)
for batch in batches:
    x = rng.random((batch, arch[0]), dtype=np.float32)
    noise = rng.random((hidden, batch, engine._max_blocks), dtype=np.float32)
    masks = {name: np.zeros((hidden, batch, engine._max_blocks), np.uint8) for name in modules}
    logits = [m.forward_batch(x, weights, meta, noise, masks[n], mode, 1)[1] for n, m in modules.items()]
    assert np.array_equal(*logits) and np.array_equal(*masks.values()), "the two kernels disagree"
    repeats = max(1, 2000 // batch)
    runs = {name: timed(m, x, noise, masks[name], repeats) for name, m in modules.items()}
    t = {name: 1e3 * s / repeats for name, s in interleaved_medians(runs, 15).items()}
    ratio = t["before"] / t["after"]
    print(f"batch {batch:4d}: before {t['before']:.4f} ms, after {t['after']:.4f} ms: x{ratio:.2f}")
