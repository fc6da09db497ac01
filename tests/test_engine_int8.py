"""Engine(weights="int8") against an independent numpy computation of the same scheme (each layer's rows
of W rounded to int8 with one scale per row; each example's layer input rounded to integers of at most
127 (8 bits); exact integer sums, scaled): the same logits to float32 rounding. The integer
products (int8_dots.c at batch 1, int8_product.c's pairs and quads for batches, each version this CPU
runs) against numpy's int64 sums, at the extremes."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from condnet.engine import Engine, kernels, layout, native
from condnet.engine.kernels import int8_input_bound
from test_engine import make_model
from test_router import topk_model, tree_model


def int8_dots(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int8_dots.c called directly: acc[c] = x . w[c], x int16 (n,), w int8 (rows, n)."""
    function = ctypes.CDLL(str(native.library_path())).condnet_int8_dots
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    x, w = np.ascontiguousarray(x, np.int16), np.ascontiguousarray(w, np.int8)
    acc = np.zeros(len(w), np.int32)
    function(x.ctypes.data, w.ctypes.data, w.shape[1], len(w), acc.ctypes.data)
    return acc


@pytest.mark.parametrize("n", [1, 7, 33, 784, 3072])
@pytest.mark.parametrize("rows", [1, 3, 4, 9])
def test_int8_dots_are_exact_integer_sums(n, rows):
    bound = int16_bound(n)
    rng = np.random.default_rng(n * 10 + rows)
    x = rng.integers(-bound, bound + 1, n)
    w = rng.integers(-127, 128, (rows, n))
    np.testing.assert_array_equal(int8_dots(x, w), w.astype(np.int64) @ x)
    # the largest sums the bound allows, both signs: no overflow
    extreme = np.full(n, bound)
    w = np.stack([np.full(n, 127), np.full(n, -127), np.tile([127, -127], n)[:n]])
    np.testing.assert_array_equal(int8_dots(extreme, w), w.astype(np.int64) @ extreme)
    assert (w.astype(np.int64) @ extreme).max() <= 2**31 - 1


def int8_paths() -> list[int]:
    """The versions of int8_product.c this CPU runs (1 portable, 2 AVX2, 3 AVX-512 VNNI, 4 AMX); switches
    back."""
    in_use = native.int8_path()
    available = [path for path in (1, 2, 3, 4) if native.int8_path(path) == path]
    native.int8_path(in_use)
    return available


def int16_bound(n: int) -> int:
    """The largest 16-bit input whose row sums with int8 weights fit int32: what the pairs product holds."""
    return min(32767, (2**31 - 1) // (127 * n))


def int8_product(path, x, xrows, accrows, col0, k, panels, width, acc, function="pairs") -> None:
    """int8_product.c's product on version `path`: acc[accrows[r]] += x[xrows[r], col0 : col0 + k] @ the
    panels' inputs col0 : col0 + k, in place (function "quads": the quads product, which adds 128 x the
    inputs' sum)."""
    library = ctypes.CDLL(str(native.library_path()))
    function = library.condnet_int8_quads_product if function == "quads" else library.condnet_int8_product
    function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_int64]  # fmt: skip
    in_use = native.int8_path()
    assert native.int8_path(path) == path
    try:
        function(x.ctypes.data, x.shape[1], xrows.ctypes.data, accrows.ctypes.data, len(xrows), col0, k,
                 panels.ctypes.data, x.shape[1], width, acc.ctypes.data, acc.shape[1])  # fmt: skip
    finally:
        native.int8_path(in_use)


def products_reference(function, x, q, acc, xrows, accrows, block, bs_in, padded):
    """acc with the product added as numpy's int64 sums of the unpadded weights (and, for the quads, the
    128 x input sum they add)."""
    expected = acc.astype(np.int64)
    inputs = x[xrows][:, block * padded : block * padded + bs_in].astype(np.int64)
    added = inputs @ q[:, block * bs_in : (block + 1) * bs_in].T.astype(np.int64)
    if function == "quads":
        added += 128 * inputs.sum(axis=1, keepdims=True)
    expected[accrows, : len(q)] += added
    return expected


@pytest.mark.parametrize("function", ["pairs", "quads"])
@pytest.mark.parametrize("path", int8_paths())
@pytest.mark.parametrize(
    ("bs_in", "bs_out"),
    [(1, 8), (6, 16), (7, 16), (10, 24), (33, 40), (64, 64), (124, 32), (130, 88), (256, 136)],
)
def test_the_int8_batch_products_are_exact_integer_sums(function, path, bs_in, bs_out):
    """Both products (pairs: every version; quads: AMX where path 4 is, VNNI where 3 or 4 is, else
    portable) for every example count from 1 to 27 (the 12- and 6-example VNNI steps and every remainder;
    AMX's groups of 16, the examples below its minimum; inputs past its last 64, on tiles of their own
    width (130, padded to 132: 4 more; 124: 60, the widest such tile); more than the four panels its
    inputs are shared by (88: five and a last panel 8 wide; 136: eight and one 8 wide)), against numpy's
    int64 products: the layouts' pairs or quads, padding and (quads) unsigned weights, and the products."""
    quads = function == "quads"
    n_in_blocks, multiple = 3, 4 if quads else 2
    padded = -(-bs_in // multiple) * multiple
    rng = np.random.default_rng(bs_in * 100 + bs_out)
    q = rng.integers(-127, 128, (bs_out, n_in_blocks * bs_in)).astype(np.int8)
    panels = (layout.int8_quads if quads else layout.int8_panels)(q, bs_in, bs_out)[0]
    width = panels.size // (n_in_blocks * padded)
    bound = 127 if quads else int16_bound(n_in_blocks * bs_in)
    x = rng.integers(-bound, bound + 1, (30, n_in_blocks, padded)).astype(np.int8 if quads else np.int16)
    if quads:
        x[:, :, bs_in:] = 0  # as the engine quantizes (the pairs' pads are random: their weights are 0)
    x = x.reshape(30, -1)
    for m in range(1, 28):
        block = m % n_in_blocks
        xrows = rng.choice(30, m, replace=False).astype(np.int64)
        accrows = rng.permutation(m).astype(np.int64) + 1  # row 0 of acc untouched
        acc = rng.integers(-1000, 1000, (m + 1, width)).astype(np.int32)
        expected = products_reference(function, x, q, acc, xrows, accrows, block, bs_in, padded)
        int8_product(path, x, xrows, accrows, block * padded, padded, panels, width, acc, function)
        np.testing.assert_array_equal(acc[:, :bs_out], expected[:, :bs_out])


@pytest.mark.parametrize("function", ["pairs", "quads"])
@pytest.mark.parametrize("path", int8_paths())
def test_the_int8_batch_products_hold_the_largest_sums(function, path):
    """The largest sums their inputs allow (pairs: 16-bit, quads: 8-bit), both signs, 13 examples."""
    n = 3072
    bound = 127 if function == "quads" else int16_bound(n)
    q = np.stack([np.full(n, 127), np.full(n, -127), np.tile([127, -127], n // 2)] * 6).astype(np.int8)
    x = np.stack([np.full(n, bound), np.full(n, -bound)] * 7)[:13]
    x = x.astype(np.int8 if function == "quads" else np.int16)
    panels = (layout.int8_quads if function == "quads" else layout.int8_panels)(q, n, 18)[0]
    acc, rows = np.zeros((13, 24), np.int32), np.arange(13, dtype=np.int64)
    int8_product(path, x, rows, rows, 0, n, panels, 24, acc, function)
    expected = products_reference(function, x, q, np.zeros((13, 24), np.int32), rows, rows, 0, n, n)
    np.testing.assert_array_equal(acc[:, :18], expected[:, :18])
    if function == "pairs":
        assert np.abs(expected).max() > 2**30


def test_the_input_bound_keeps_row_sums_in_int32():  # hand-computed: min(127, floor((2^31 - 1) / (255 n)))
    assert int8_input_bound(1) == 127
    assert int8_input_bound(3072) == 127
    assert int8_input_bound(66_000) == 127
    assert int8_input_bound(70_000) == 120


@pytest.mark.skipif(4 not in int8_paths(), reason="AMX: not on this CPU")
def test_the_amx_products_buffer_is_freed_with_its_thread():
    """AMX gathers a group's input rows into a buffer of the calling thread (64 examples x 3072 inputs:
    192 KiB here). It outlived its thread: 300 threads that each ran one product left ~58 MB more
    resident (a server with a thread per request leaked a buffer a request). Now freed when its thread
    ends: the process grows by less than a tenth of that."""
    import threading

    function = ctypes.CDLL(str(native.library_path())).condnet_int8_quads_product
    function.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_int64]  # fmt: skip
    m, k, width = 64, 3072, 16
    x = np.ones((m, k), np.int8)
    panels = np.full(k * width, 128, np.uint8)  # weights of 0
    rows = np.arange(m, dtype=np.int64)
    acc = np.zeros((m, width), np.int32)

    def product():
        function(x.ctypes.data, k, rows.ctypes.data, rows.ctypes.data, m, 0, k, panels.ctypes.data, k, width,
                 acc.ctypes.data, width)  # fmt: skip

    def resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096

    in_use = native.int8_path()
    native.int8_path(4)
    try:
        for _ in range(2):  # the thread machinery's own first allocations
            thread = threading.Thread(target=product)
            thread.start()
            thread.join()
        before = resident()
        for _ in range(300):
            thread = threading.Thread(target=product)
            thread.start()
            thread.join()
        grown = resident() - before
    finally:
        native.int8_path(in_use)
    assert acc[0, 0] == 300 * 128 * k + 2 * 128 * k  # the products ran: 128 x the inputs' sum each
    assert grown < 300 * m * k // 10, f"{grown / 1e6:.1f} MB"


def quantized_forward(model, x: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """The int8 scheme in numpy, every block of every layer computed and the masks applied after."""
    h = x.astype(np.float32)
    layers = [*model.hidden, model.output]
    for index, layer in enumerate(layers):
        w = layer.weight.detach().numpy().astype(np.float32)
        bias = layer.bias.detach().numpy().astype(np.float64)
        largest_w = np.abs(w).max(axis=1)
        row_scale = np.where(largest_w > 0, largest_w / np.float32(127), np.float32(1)).astype(np.float32)
        q = np.rint(w / row_scale[:, None]).astype(np.int64)
        bound = np.float32(min(127, (2**31 - 1) // (255 * w.shape[1])))
        largest = np.abs(h).max(axis=1, keepdims=True)  # blocks switched off are 0: they change nothing
        inverse = np.where(largest > 0, bound / np.where(largest > 0, largest, 1), 0).astype(np.float32)
        hq = np.rint(h * inverse).astype(np.int64)
        out = (hq @ q.T) * (largest.astype(np.float64) / bound) * row_scale + bias
        if index < len(layers) - 1:
            out = np.tanh(out) * np.repeat(masks[index], out.shape[1] // masks[index].shape[1], axis=1)
        h = out.astype(np.float32)
    return h


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_int8_matches_the_quantized_reference(batch):
    model = make_model(51, [(5, 16), (3, 10), (2, 33)], 7)  # odd tiles: 33 x 10, 7 x 33
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 51), dtype=np.float32) * 4 - 2
    masks = [(rng.random((batch, k)) < 0.6).astype(np.float32) for k in (5, 3, 2)]
    for mask in masks:
        mask[:, 0] = 1  # some block on in every layer: the logits then depend on the rounding
    logits, used = Engine(model, weights="int8").forward(x, masks=masks)
    expected = quantized_forward(model, x, masks)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))
    for mask, given in zip(used, masks, strict=True):
        np.testing.assert_array_equal(mask, given)

    # and the rounding is real: the float32 engine differs by more than float32 noise, and by little
    exact, _ = Engine(model).forward(x, masks=masks)
    assert 1e-4 < np.abs(exact - logits).max() < 0.05 * np.abs(exact).max()


def test_int8_batches_on_two_threads_match_the_quantized_reference():
    """Two threads take slices of the batch where a layer has INT8_PARALLEL_MIN_WORK multiply-adds
    (INT8_AMX_PARALLEL_MIN_WORK on AMX): each example's answer is the reference's, and the same bits as on
    one thread."""
    model = make_model(4096, [(8, 64), (4, 16)], 5)
    rng = np.random.default_rng(0)
    x = rng.random((61, 4096), dtype=np.float32) * 2 - 1
    masks = [(rng.random((61, k)) < 0.9).astype(np.float32) for k in (8, 4)]
    for mask in masks:
        mask[:, 0] = 1
    amx = native.int8_path() == 4
    threshold = kernels.INT8_AMX_PARALLEL_MIN_WORK if amx else kernels.INT8_PARALLEL_MIN_WORK
    assert 61 * 4096 * masks[0].sum(axis=1).mean() * 64 >= threshold  # layer 0 splits
    two, used = Engine(model, threads=2, weights="int8").forward(x, masks=masks)
    expected = quantized_forward(model, x, masks)
    np.testing.assert_allclose(two, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))
    np.testing.assert_array_equal(two, Engine(model, weights="int8").forward(x, masks=masks)[0])
    for mask, given in zip(used, masks, strict=True):
        np.testing.assert_array_equal(mask, given)


def test_int8_decides_as_the_model_does_to_its_rounding():
    """Threshold decisions read the int8 layers' outputs (the scores stay float32): on a model whose
    sigmas keep away from 0.5, the same masks as the float32 model's, and close logits, in both modes of
    calling (a batch's integer sums are its examples' batch-1 sums: the same masks, the same logits to
    float32 rounding, where the activations' vectorized arithmetic may differ in the last bit)."""
    model = make_model(40, [(4, 8), (3, 8)], 5)
    x = np.random.default_rng(0).random((100, 40), dtype=np.float32)
    engine = Engine(model, weights="int8")
    logits, masks = engine.forward(x, "threshold")
    with torch.no_grad():
        out = model(torch.from_numpy(x), mode="threshold")
    sigmas = [layer.sigma.numpy() for layer in out.layers]
    clear = np.all([np.abs(s - 0.5).min(axis=1) > 0.02 for s in sigmas], axis=0)
    assert clear.sum() >= 30
    for mask, layer in zip(masks, out.layers, strict=True):
        np.testing.assert_array_equal(mask[clear], layer.mask.numpy()[clear])
    np.testing.assert_allclose(logits[clear], out.logits.numpy()[clear], atol=0.05)
    one_by_one = [engine.forward(x[b : b + 1], "threshold") for b in range(len(x))]
    np.testing.assert_allclose(np.concatenate([o[0] for o in one_by_one]), logits, rtol=1e-6, atol=1e-6)
    for index, mask in enumerate(masks):
        np.testing.assert_array_equal(np.concatenate([o[1][index] for o in one_by_one]), mask)


@pytest.mark.parametrize("router", ["topk", "switch", "tree"])
def test_int8_batches_of_scaled_routers_give_their_batch_1_answers(router):
    """Routers whose gate values scale the blocks (top-k, switch, tree): a batch through the int8 batch
    kernel decides and scales as batch-1 calls do."""
    model = tree_model() if router == "tree" else topk_model(router=router)
    x = np.random.default_rng(1).random((20, 10), dtype=np.float32) * 2 - 1
    engine = Engine(model, weights="int8")
    logits, masks = engine.forward(x, "threshold")
    one_by_one = [engine.forward(x[b : b + 1], "threshold") for b in range(len(x))]
    np.testing.assert_allclose(np.concatenate([o[0] for o in one_by_one]), logits, rtol=1e-6, atol=1e-6)
    for index, mask in enumerate(masks):
        np.testing.assert_array_equal(np.concatenate([o[1][index] for o in one_by_one]), mask)
    assert 0 < np.concatenate(masks, axis=1).mean() < 1  # gated: some blocks off


def test_an_int8_input_of_zeros_gives_the_bias_path():
    model = make_model(12, [(2, 4)], 3, kind="nn")
    logits, _ = Engine(model, weights="int8").forward(np.zeros((1, 12), np.float32))
    with torch.no_grad():
        hidden = torch.tanh(model.hidden[0].bias)
        q_out = quantized_forward(model, np.zeros((1, 12), np.float32), [np.ones((1, 2), np.float32)])
    np.testing.assert_allclose(logits, q_out, rtol=1e-5, atol=1e-6)
    assert hidden.abs().max() > 0  # the bias path is not zero


def test_int8_refuses_non_finite_inputs_and_takes_large_ones():
    engine = Engine(make_model(6, [(2, 4)], 2), weights="int8")
    for bad in (np.nan, np.inf, -np.inf):
        for batch in (1, 5):
            x = np.ones((batch, 6), np.float32)
            x[batch - 1, 3] = bad
            with pytest.raises(ValueError, match="NaN, infinite"):
                engine.forward(x)
    logits, _ = engine.forward(np.full((2, 6), 1e30, np.float32))  # large but finite: quantized like any
    assert np.isfinite(logits).all()


def test_rows_of_subnormal_weights_quantize_to_zero_without_a_warning():
    """A row whose largest |weight| is subnormal (weight decay on blocks a router never picks: runs/mnist_best
    holds 22,578 such weights) has a scale that underflows to 0 in float32: it divided by zero (numpy's
    RuntimeWarnings, NaN cast to int8). It is stored as a zero row (scale 1), as an all-zero row is; the
    others as before (hand-computed: 127 and -64 at scale 1/127 x 2)."""
    import warnings

    weight = np.array([[1e-44, -3e-45, 0.0], [2.0, -1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q, scales = layout.int8_rows(weight)
    np.testing.assert_array_equal(q, [[0, 0, 0], [127, -64, 0], [0, 0, 0]])
    np.testing.assert_array_equal(scales, np.array([1.0, 2.0 / 127, 1.0], np.float32))


def test_an_input_too_small_to_scale_quantizes_to_zeros():
    """An int8 layer input whose largest |value| is below bound / FLT_MAX (3.7e-37 for 127) made the
    inverse scale infinite (inputs x inf, then a float-to-int8 cast of inf: undefined). It rounds to zeros
    now (scale and inverse 0, as an input of zeros); a normal small input keeps its scales (hand-computed:
    127 / 1e-30 and 1e-30 / 127)."""
    assert kernels.int8_input_scales(np.float32(1e-38), np.float32(127)) == (0.0, 0.0)
    scale, inverse = kernels.int8_input_scales(np.float32(1e-30), np.float32(127))
    assert scale == np.float32(1e-30) / np.float32(127) and inverse == np.float32(127) / np.float32(1e-30)
    model = make_model(8, [(2, 4)], 3)
    tiny = np.full((3, 8), 1e-38, np.float32)
    engine = Engine(model, weights="int8")
    np.testing.assert_array_equal(engine.forward(tiny)[0], engine.forward(np.zeros_like(tiny))[0])
    np.testing.assert_array_equal(engine.forward(tiny[:1])[0], engine.forward(np.zeros_like(tiny[:1]))[0])
