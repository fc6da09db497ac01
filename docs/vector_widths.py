"""The micro-kernel's AVX-512 product against its 8-wide one (the AVX2 + FMA code path), and the int8
batch product's AVX-512 VNNI version (8-bit quads) against its AVX2 one (16-bit pairs) and, where the CPU
has AMX, its AMX version (quads on tiles) against VNNI, in one process on one machine
(`condnet.engine.native.vector_width` and `native.int8_path` switch them; the numba code around them stays
the same): one batch's time through `Engine.forward`, interleaved medians, one thread. Needs a CPU with
AVX-512 (and VNNI for the int8 columns). Usage: python docs/vector_widths.py ARCH BLOCK_SIZE DENSITY,
e.g. 3072,640,640,10 64 0.18 (density 1.0: the dense net, one block per layer)."""

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
engines = {"fp32": Engine(model), "int8": Engine(model, weights="int8")}
best_int8 = native.int8_path()
vnni, amx = best_int8 >= 3, best_int8 == 4
# the versions timed: (weights, the fp32 product's vector width, the int8 product's version)
versions = {"fp32 8-wide": ("fp32", 8, 2), "fp32 AVX-512": ("fp32", 16, 2)}
if vnni:
    versions |= {"int8 AVX2": ("int8", 16, 2), "int8 VNNI": ("int8", 16, 3)}
if amx:
    versions |= {"int8 AMX": ("int8", 16, 4)}
x = np.random.default_rng(0).random((1024, arch[0]), dtype=np.float32)
print(f"{machine()}: {sys.argv[1]}, blocks {block}, density {density}")
for batch in (2, 4, 8, 50, 256):
    chunks = [np.ascontiguousarray(np.resize(x[i * batch % 1024 :][:batch], (batch, arch[0])))
              for i in range(max(1, 64 // batch))]  # fmt: skip

    def run(weights, width, path, chunks=chunks):
        def forward():
            native.vector_width(width)
            native.int8_path(path)
            for chunk in chunks:
                engines[weights].forward(chunk, "threshold" if dense else "sample", seed=1)

        return forward

    medians = interleaved_medians({name: run(*version) for name, version in versions.items()}, 15)
    t = {name: 1e3 * s / len(chunks) for name, s in medians.items()}
    line = f"batch {batch:4d}: " + ", ".join(f"{name} {ms:.4f} ms" for name, ms in t.items())
    line += f": AVX-512 x{t['fp32 8-wide'] / t['fp32 AVX-512']:.2f}"
    if vnni:
        line += f"; int8 AVX2 / fp32 8-wide {t['int8 AVX2'] / t['fp32 8-wide']:.2f}"
        line += f", int8 VNNI / fp32 AVX-512 {t['int8 VNNI'] / t['fp32 AVX-512']:.2f}"
    if amx:
        line += f", int8 AMX / VNNI {t['int8 AMX'] / t['int8 VNNI']:.2f}"
    print(line)
native.vector_width(16)
native.int8_path(best_int8)
