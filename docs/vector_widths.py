"""The micro-kernel's AVX-512 product against its 8-wide one (the AVX2 + FMA code path), in one process on
one machine (`condnet.engine.native.vector_width` switches them; the numba code around them stays the
same): one batch's time through `Engine.forward`, interleaved medians, one thread. Needs a CPU with
AVX-512. Usage: python docs/vector_widths.py ARCH BLOCK_SIZE DENSITY, e.g. 3072,640,640,10 64 0.18
(density 1.0: the dense net, one block per layer)."""

import sys

import numpy as np

from condnet.bench.compare import synthetic_model
from condnet.engine import Engine, native
from condnet.engine.timing import interleaved_medians, machine

if native.vector_width() != 16:
    sys.exit("this CPU has no AVX-512: only the 8-wide product runs here")
arch = [int(a) for a in sys.argv[1].split(",")]
block, density = int(sys.argv[2]), float(sys.argv[3])
hidden = len(arch) - 2
dense = density >= 1.0
model = synthetic_model(arch, [block] * hidden, [density] * hidden, 0, "nn" if dense else "condnet")
engine = Engine(model)
x = np.random.default_rng(0).random((1024, arch[0]), dtype=np.float32)
print(f"{machine()}: {sys.argv[1]}, blocks {block}, density {density}")
for batch in (2, 4, 8, 50, 256):
    chunks = [np.ascontiguousarray(np.resize(x[i * batch % 1024 :][:batch], (batch, arch[0])))
              for i in range(max(1, 64 // batch))]  # fmt: skip

    def run(width, chunks=chunks):
        def forward():
            native.vector_width(width)
            for chunk in chunks:
                engine.forward(chunk, "threshold" if dense else "sample", seed=1)

        return forward

    medians = interleaved_medians({8: run(8), 16: run(16)}, 15)
    t = {width: 1e3 * s / len(chunks) for width, s in medians.items()}
    print(f"batch {batch:4d}: 8-wide {t[8]:.4f} ms, AVX-512 {t[16]:.4f} ms: x{t[8] / t[16]:.2f}")
native.vector_width(16)
