"""A narrow product two ways (RESULTS 10.24): docs/narrow_product.c (dot products along the inputs, tried
and not kept) against the engine's block_layer (microkernel.c's panels of 16 outputs), on the product a
net's batch starts with: the first policy's scores (ARCH gated in blocks of BLOCK) or, for BLOCK 0, the
dense net's first layer. One process, interleaved medians, one thread; inputs whose rows start on a cache
line and 16 bytes past one (as numpy's arrays often do); each vector width the CPU has. Both results are
checked against float64 sums. Needs gcc.

    .venv/bin/python docs/narrow_product_ab.py ARCH BLOCK BATCH    (e.g. 3072,640,640,10 64 50)
"""

import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

import llvmlite.binding
import numpy as np
from numba import njit, types

from condnet.bench.compare import synthetic_model
from condnet.engine import Engine, native
from condnet.engine import kernels as K
from condnet.engine.layout import ALIGN
from condnet.engine.timing import interleaved_medians, machine


def build(directory: Path) -> Path:
    """docs/narrow_product.c as a shared library, with setup.py's flags."""
    library = directory / "narrow_product.so"
    source = Path(__file__).with_name("narrow_product.c")
    subprocess.run(
        ["gcc", "-O3", "-Wno-psabi", "-shared", "-fPIC", str(source), "-o", str(library)], check=True
    )
    return library


def first_product(arch: list[int], block: int):
    """(weights as rows (n_out, n_in), the same as panels (1, ...), bias) of the net's first product."""
    if block:
        model = synthetic_model(arch, [block] * (len(arch) - 2), [0.18] * (len(arch) - 2))
    else:
        model = synthetic_model(arch, [1], [1.0], kind="nn")
    engine = Engine(model)
    weights, row, n_in = engine._weights, engine._meta[0], arch[0]
    if block:  # the scores: Z at M_Z (one input block: the layer's rows), its panels at M_Z_PANELS
        n_out, at, panels_at, bias_at = row[K.M_SCORES], row[K.M_Z], row[K.M_Z_PANELS], row[K.M_D]
    else:  # a dense layer of one block: its tiles (one input block) are W's rows
        n_out, at, panels_at, bias_at = arch[1], row[K.M_TILES], row[K.M_PANELS], row[K.M_BIAS]
    rows_w = weights[at : at + n_out * n_in].reshape((n_out, n_in))
    panels = K._panels(weights, panels_at, 1, n_in, n_out)
    return rows_w, panels, weights[bias_at : bias_at + n_out]


def main(arch: list[int], block: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        library = build(Path(directory))
        llvmlite.binding.load_library_permanently(str(library))
        set_width = ctypes.CDLL(str(library)).narrow_vector_width
        set_width.argtypes, set_width.restype = [ctypes.c_int], ctypes.c_int
        narrow_product = types.ExternalFunction(
            "narrow_product",
            types.void(types.intp, types.int64, types.intp, types.intp, types.int64, types.int64, types.int64,
                       types.intp, types.int64, types.int64, types.intp, types.int64),
        )  # fmt: skip

        @njit
        def narrow(x, rows_w, bias, rows, out):
            out[:] = 0.0
            narrow_product(x.ctypes.data, x.shape[1], rows.ctypes.data, rows.ctypes.data, x.shape[0], 0,
                           x.shape[1], rows_w.ctypes.data, rows_w.shape[1], rows_w.shape[0], out.ctypes.data,
                           out.shape[1])  # fmt: skip
            for b in range(out.shape[0]):
                out[b] += bias

        rows_w, panels, bias = first_product(arch, block)
        n_out, n_in = rows_w.shape
        print(machine())
        what = f"the first policy's {n_out} scores" if block else f"the first layer ({n_out} outputs)"
        print(f"{'-'.join(map(str, arch))}, {what} from {n_in} inputs, batch {batch}, one thread")
        on, rows = np.ones((batch, 1), np.uint8), np.arange(batch, dtype=np.int64)
        raw = np.random.default_rng(0).random(batch * n_in + 2 * ALIGN, dtype=np.float32)
        default = native.vector_width()
        widths = (16, 8) if default == 16 else (8,)
        for offset_bytes in (0, 16):
            start = (-raw.ctypes.data // 4) % ALIGN + offset_bytes // 4
            x = raw[start : start + batch * n_in].reshape(batch, n_in)
            expected = x.astype(np.float64) @ rows_w.T.astype(np.float64) + bias
            ours, engine = np.zeros((batch, n_out), np.float32), np.zeros((batch, n_out), np.float32)

            def by_panels(x=x, engine=engine):
                engine[:] = 0.0
                K.block_layer(x, on, panels, bias, on, K.IDENTITY, engine)

            def by_rows(x=x, ours=ours):
                narrow(x, rows_w, bias, rows, ours)

            for width in widths:
                set_width(width)
                native.vector_width(width)
                by_rows()
                by_panels()
                for result in (ours, engine):
                    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)
                times = interleaved_medians({"narrow": by_rows, "panels": by_panels}, repeats=301)
                print(f"{width}-wide, rows {offset_bytes} B past a cache line: narrow_product.c "
                      f"{times['narrow'] * 1e6:.1f} us, block_layer {times['panels'] * 1e6:.1f} us, "
                      f"panels / narrow {times['panels'] / times['narrow']:.2f}")  # fmt: skip
        native.vector_width(default)


if __name__ == "__main__":
    main([int(n) for n in sys.argv[1].split(",")], int(sys.argv[2]), int(sys.argv[3]))
