"""narrow_product.c (the product of layers of few outputs) against numpy in float64: gathered rows, every
group size around its 3-row steps, 1-16 outputs (its 8- and 4-output steps and their remainders), runs
of inputs that are and are not whole vectors, rows of weights apart by more than their length, sums
added to what is there; and the engine's batches through it against its batch-1 outputs."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from condnet.engine import Engine, kernels, native
from test_engine import assert_matches, make_model

WIDTHS = [8, 16] if native.vector_width() == 16 else [8]  # 16: the CPU has AVX-512


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}-wide")
def vector_width(request):
    default = native.vector_width()
    native.vector_width(request.param)
    yield request.param
    native.vector_width(default)


def narrow_product():
    function = ctypes.CDLL(str(native.library_path())).condnet_narrow_product
    function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p] + [
        ctypes.c_int64
    ] * 3
    function.argtypes += [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
    function.restype = None
    return function


@pytest.mark.parametrize("n_out", [1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 15, 16])
@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 5, 7, 11])
@pytest.mark.parametrize(
    "col0, k", [(0, 5), (3, 16), (7, 37), (1, 784), (2, 1100), (0, 2100)]
)  # > 1024: chunks
def test_narrow_product_matches_numpy(n_out, m, col0, k, vector_width):
    rng = np.random.default_rng(n_out * 1000 + m * 10 + k)
    batch, ldx, ldw = 12, col0 + k + 3, k + 5
    x = rng.standard_normal((batch, ldx), dtype=np.float32)
    w = rng.standard_normal((n_out, ldw), dtype=np.float32)
    xrows = rng.choice(batch, m, replace=False).astype(np.int64)
    acc = rng.standard_normal((m + 2, n_out + 3), dtype=np.float32)  # sums are added to what is there
    accrows = rng.permutation(m + 2)[:m].astype(np.int64)
    expected = acc.astype(np.float64)
    expected[accrows, :n_out] += x[xrows, col0 : col0 + k].astype(np.float64) @ w[:, :k].T.astype(np.float64)
    narrow_product()(x.ctypes.data, ldx, xrows.ctypes.data, accrows.ctypes.data, m, col0, k, w.ctypes.data,
                     ldw, n_out, acc.ctypes.data, acc.shape[1])  # fmt: skip
    np.testing.assert_allclose(
        acc, expected, rtol=1e-5, atol=1e-4
    )  # outputs past n_out and other rows: as they were
    untouched = np.setdiff1d(np.arange(m + 2), accrows)
    np.testing.assert_array_equal(acc[untouched], expected[untouched])
    np.testing.assert_array_equal(acc[:, n_out:], expected[:, n_out:])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_input_makes_its_sums_non_finite(bad, vector_width):
    """How the engine finds NaN and infinite inputs: through the sums they enter (also in the last, partial
    vector of a run)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 300), dtype=np.float32)
    x[1, 7], x[2, 299] = bad, bad
    w = rng.standard_normal((10, 300), dtype=np.float32)
    rows = np.arange(4, dtype=np.int64)
    acc = np.zeros((4, 10), np.float32)
    at = rows.ctypes.data
    narrow_product()(x.ctypes.data, 300, at, at, 4, 0, 300, w.ctypes.data, 300, 10, acc.ctypes.data, 10)
    assert np.isfinite(acc[[0, 3]]).all()
    assert not np.isfinite(acc[[1, 2]]).any()


def test_narrow_layers_take_it_where_it_pays(vector_width):
    """The rule of kernels.narrow_pays (RESULTS 10.24)."""
    assert not kernels.narrow_pays(10, 64)  # short runs: the lanes' sums outweigh the product
    assert not kernels.narrow_pays(24, 784)
    assert kernels.narrow_pays(10, 784)
    assert kernels.narrow_pays(16, 784) == (vector_width == 16)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "kind, layers",
    [("condnet", [(10, 30)]), ("nn", [(1, 10)]), ("nn", [(1, 16)])],
    ids=["scores", "10", "16"],
)
def test_batches_through_narrow_layers_match_the_model(kind, layers, threads, vector_width):
    """The whole engine where narrow_layer computes the policies' 10 scores from 300 inputs, or a dense
    net's first layer of 10 or 16 units: threshold mode against the PyTorch model (an independent dense
    masked computation)."""
    model = make_model(300, layers, 7, kind=kind)
    x = np.random.default_rng(threads).random((64, 300), dtype=np.float32)
    logits, masks = Engine(model, threads=threads).forward(x, "threshold")
    with torch.no_grad():
        out = model(torch.from_numpy(x), mode="threshold")
    for mask, layer in zip(masks, out.layers, strict=True):
        assert np.array_equal(mask, layer.mask.numpy())
    assert_matches(logits, out.logits)
