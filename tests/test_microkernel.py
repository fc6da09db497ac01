"""The C micro-kernel (engine/microkernel.c) against numpy: gathered rows, any group size (the 6-row
steps of the 8-wide product, the 12-row and 8-row-by-two-panel steps of the AVX-512 one, and every
remainder), 16- and 8-wide panels, any run of inputs (short and long), float32 and bfloat16 weights,
sums added to what is there."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from condnet.engine import native
from condnet.engine.kernels import panel_width
from condnet.engine.layout import to_bf16, to_panels


def gathered_product():
    function = ctypes.CDLL(str(native.library_path())).condnet_gathered_product
    function.argtypes = (
        [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
        + [ctypes.c_int64] * 3
        + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    )
    function.restype = None
    return function


WIDTHS = [8, 16] if native.vector_width() == 16 else [8]  # 16: the CPU has AVX-512


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}-wide")
def vector_width(request):
    """Each vector width the CPU can run, then the default back."""
    default = native.vector_width()
    native.vector_width(request.param)
    yield request.param
    native.vector_width(default)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("bs_out", [1, 8, 10, 16, 24, 32, 40, 48, 64, 80, 104])  # panels: 1, 2, 4 at a time
@pytest.mark.parametrize("m", [0, 1, 2, 3, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 20, 25])
@pytest.mark.parametrize("n_in, col0, k", [(37, 5, 19), (700, 3, 600), (1100, 9, 1090)])  # > QUADS_REREAD
def test_gathered_product_matches_numpy(bs_out, m, n_in, col0, k, bf16, vector_width):
    """bf16 against the weights rounded by PyTorch (an independent rounding), summed in float64."""
    rng = np.random.default_rng(bs_out * 100 + m)
    batch = 25  # the inputs col0 .. col0 + k of each panel
    weight = rng.standard_normal((2 * bs_out, n_in), dtype=np.float32)  # two output blocks
    panels = to_panels(weight, bs_out)
    if bf16:
        panels = to_bf16(panels).reshape(2, -1)
        weight = torch.from_numpy(weight).to(torch.bfloat16).float().numpy()
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    xrows = rng.choice(batch, m, replace=False).astype(np.int64)
    width = panel_width(bs_out)
    acc = rng.standard_normal((m + 3, width), dtype=np.float32)  # sums are added to what is there
    accrows = rng.permutation(m + 3)[:m].astype(np.int64)
    expected = acc.astype(np.float64)
    block = weight[bs_out:, col0 : col0 + k].astype(np.float64)  # the second output block
    expected[accrows, :bs_out] += x[xrows, col0 : col0 + k] @ block.T
    second = panels[1]
    gathered_product()(x.ctypes.data, n_in, xrows.ctypes.data, accrows.ctypes.data, m, col0, k,
                       second.ctypes.data, n_in, width, acc.ctypes.data, width, int(bf16))  # fmt: skip
    np.testing.assert_allclose(acc[:, :bs_out], expected[:, :bs_out], rtol=1e-5, atol=1e-4)
    untouched = np.setdiff1d(np.arange(m + 3), accrows)
    np.testing.assert_array_equal(acc[untouched], expected[untouched])


def test_bf16_rounds_to_nearest_even_as_pytorch_does():
    values = np.float32([1.0, -2.5, 3.14159, 1e-30, 65504.0, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 0.0])
    noise = np.random.default_rng(0).standard_normal(1000, dtype=np.float32)
    values = np.concatenate([values, noise])  # 1009 values: an odd count
    ours = to_bf16(values).view(np.uint16)[: len(values)]
    theirs = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    assert len(to_bf16(values).view(np.uint16)) == len(values) + 1  # an odd count is padded with a zero


def test_a_missing_library_says_how_to_build_it(tmp_path):
    with pytest.raises(ImportError, match="pip install"):
        native.library_path(tmp_path)


def test_the_vector_width_is_one_the_cpu_runs():
    cpuinfo = Path("/proc/cpuinfo")
    expected = 16 if cpuinfo.is_file() and "avx512f" in cpuinfo.read_text().split() else 8
    assert native.vector_width() == expected
    assert native.vector_width(16) == expected  # 16 where the CPU lacks AVX-512 is refused
