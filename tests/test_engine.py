"""The engine against the PyTorch model given the same masks (an independent dense masked computation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condnet.config import Config, ModelConfig, validate
from condnet.engine import Engine
from condnet.nn.condnet import CondNet


def make_model(input_dim, layers, n_classes, kind="condnet", activation="tanh", seed=0):
    """layers: list of (n_blocks, block_size)."""
    widths = [k * b for k, b in layers]
    cfg = validate(
        Config(
            model=ModelConfig(
                kind=kind, widths=widths, block_size=[b for _, b in layers], activation=activation, tau=[0.3]
            )
        )
    )
    torch.manual_seed(seed)
    model = CondNet(input_dim, n_classes, cfg.model)
    with torch.no_grad():  # make biases non-zero so a missing bias term would show
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(-0.5, 0.5)
    return model.eval()


def assert_matches(engine_logits, torch_logits):
    expected = torch_logits.detach().numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(engine_logits, expected, rtol=1e-5, atol=1e-5 * scale)


layer_strategy = st.tuples(st.integers(1, 6), st.sampled_from([1, 2, 3, 8, 16, 33, 64, 128]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    input_dim=st.integers(1, 100),
    layers=st.lists(layer_strategy, min_size=1, max_size=3),
    n_classes=st.integers(1, 12),
    batch=st.sampled_from([1, 2, 7, 50, 300]),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    activation=st.sampled_from(["tanh", "relu"]),
    seed=st.integers(0, 1000),
)
def test_given_masks_match_the_model(input_dim, layers, n_classes, batch, density, activation, seed):
    model = make_model(input_dim, layers, n_classes, activation=activation, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, input_dim), dtype=np.float32)
    masks = [(rng.random((batch, k)) < density).astype(np.float32) for k, _ in layers]
    logits, used = Engine(model).forward(x, masks=masks)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), masks=[torch.from_numpy(m) for m in masks]).logits
    assert_matches(logits, expected)
    assert all(np.array_equal(u, m) for u, m in zip(used, masks, strict=True))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 64])
def test_threshold_mode_matches_the_model(threads, batch):
    model = make_model(30, [(8, 16), (4, 32)], 5)
    x = np.random.default_rng(0).random((batch, 30), dtype=np.float32)
    engine = Engine(model, threads=threads)
    logits, masks = engine.forward(x, "threshold")
    with torch.no_grad():
        out = model(torch.from_numpy(x), mode="threshold")
    for m, t in zip(masks, out.layers, strict=True):
        assert np.array_equal(m, t.mask.numpy())
    assert 0 < np.mean(masks[0]) < 1  # a real mix of on and off blocks
    assert_matches(logits, out.logits)


def test_a_dense_layer_in_small_blocks_is_computed_as_one_block():
    """Every block of a dense layer is on, so the engine computes it as one tile of its whole width (in
    blocks of 16, 784-1024-1024-10 took 1.26-1.49x longer: RESULTS 10.12); its masks are still those of the
    config's blocks, and given masks that switch some of them off still give the model's logits."""
    from condnet.engine import kernels

    model = make_model(30, [(8, 16), (4, 8)], 5, kind="nn")
    engine = Engine(model)
    assert list(engine._meta[:2, kernels.M_OUT_BLOCKS]) == [1, 1]
    rng = np.random.default_rng(3)
    x = rng.random((7, 30), dtype=np.float32)
    for batch in (1, 2, 7):  # the batch-1 kernel, a small batch, the batch kernel
        logits, masks = engine.forward(x[:batch])
        assert [m.shape for m in masks] == [(batch, 8), (batch, 4)] and all(m.all() for m in masks)
        with torch.no_grad():
            assert_matches(logits, model(torch.from_numpy(x[:batch])).logits)
        given = [(rng.random((batch, k)) < 0.5).astype(np.uint8) for k in (8, 4)]
        logits, used = engine.forward(x[:batch], masks=given)
        assert all(np.array_equal(u, g) for u, g in zip(used, given, strict=True))
        with torch.no_grad():
            expected = model(
                torch.from_numpy(x[:batch]), masks=[torch.from_numpy(g.astype(np.float32)) for g in given]
            )
        assert_matches(logits, expected.logits)


def test_sample_mode_is_seeded_and_consistent_with_its_masks():
    model = make_model(20, [(10, 4), (6, 8)], 3)
    x = np.random.default_rng(1).random((200, 20), dtype=np.float32)
    engine = Engine(model)
    a, masks_a = engine.forward(x, "sample", seed=5)
    b, masks_b = engine.forward(x, "sample", seed=5)
    assert np.array_equal(a, b) and all(np.array_equal(p, q) for p, q in zip(masks_a, masks_b, strict=True))
    with torch.no_grad():
        out = model(torch.from_numpy(x), masks=[torch.from_numpy(m.astype(np.float32)) for m in masks_a])
        sigma = out.layers[0].sigma.numpy()
    assert_matches(a, out.logits)
    se = np.sqrt((sigma * (1 - sigma)).mean() / sigma.size)
    assert abs(masks_a[0].mean() - sigma.mean()) < 5 * se  # draws follow the policy


@pytest.mark.parametrize("kind", ["nn", "bdnn"])
def test_baselines_run_on_the_engine(kind):
    model = make_model(12, [(4, 8)], 3, kind=kind)
    x = np.random.default_rng(2).random((40, 12), dtype=np.float32)
    logits, masks = Engine(model).forward(x, "sample", seed=0)
    with torch.no_grad():
        expected = model(
            torch.from_numpy(x), masks=[torch.from_numpy(m.astype(np.float32)) for m in masks]
        ).logits
    assert_matches(logits, expected)
    if kind == "nn":
        assert masks[0].all()


def test_bad_inputs_are_explained():
    engine = Engine(make_model(6, [(2, 4)], 2))
    with pytest.raises(ValueError, match=r"\(batch, 6\)"):
        engine.forward(np.zeros((3, 7), np.float32))
    for bad in (np.nan, np.inf, -np.inf):  # one bad entry, at batch 1, in a batch, in a large batch
        for batch in (1, 5, 11_000):
            x = np.ones((batch, 6), np.float32)
            x[batch - 1, 3] = bad
            with pytest.raises(ValueError, match="NaN, infinite"):
                engine.forward(x)
    engine.forward(np.full((2, 6), 1e30, np.float32))  # large but finite is accepted
    with pytest.raises(ValueError, match="threads"):
        engine.set_threads(0)
    for bad in (np.zeros((2, 6), complex), np.full((2, 6), "a"), np.zeros((2, 6), object)):
        with pytest.raises(ValueError, match="real-valued"):
            engine.forward(bad)
    for bad in (np.zeros(6, np.float32), np.zeros((1, 1, 6), np.float32), [[1.0] * 5]):
        with pytest.raises(ValueError, match=r"\(batch, 6\)"):
            engine.forward(bad)
    with pytest.raises(ValueError, match="mode must be one of"):
        engine.forward(np.zeros((1, 6), np.float32), mode="thresh")
    with pytest.raises(ValueError, match="one array per hidden layer"):
        engine.forward(np.zeros((1, 6), np.float32), masks=[])
    with pytest.raises(ValueError, match=r"masks\[0\] must have shape \(1, 2\)"):
        engine.forward(np.zeros((1, 6), np.float32), masks=[np.ones((1, 3))])


@pytest.mark.parametrize("mode", ["threshold", "sample", "given"])
def test_a_non_finite_input_is_refused_wherever_it_is(mode):
    """Batches find NaN and infinities through the first layer's sums: also where the weights are 0
    (inf * 0 is NaN) and for an example whose first layer computes no block (not even the NaN's)."""
    model = make_model(6, [(3, 4), (2, 4)], 2)
    with torch.no_grad():
        model.hidden[0].weight[:, 2] = 0.0  # input 2 enters no sum with a non-zero weight
    engine = Engine(model)
    for row, column in ((0, 2), (4, 5), (6, 0)):
        for bad in (np.nan, np.inf, -np.inf):
            x = np.ones((7, 6), np.float32)
            x[row, column] = bad
            masks = [np.ones((7, 3)), np.ones((7, 2))]
            masks[0][row] = 0  # given: the bad example's first layer computes nothing
            with pytest.raises(ValueError, match="NaN, infinite"):
                engine.forward(x, "sample", masks=masks if mode == "given" else None, seed=0)
            with pytest.raises(ValueError, match="NaN, infinite"):
                engine.forward(x, "threshold" if mode == "threshold" else "sample")


@pytest.mark.parametrize("batch", [1, 9])
def test_other_dtypes_and_layouts_give_the_float32_answer(batch):
    """Float64, integer, Fortran-ordered, strided and list inputs are converted: the same logits as the
    C-contiguous float32 array of the same values."""
    model = make_model(6, [(3, 4)], 2)
    engine = Engine(model)
    values = np.random.default_rng(6).integers(-3, 4, (batch, 12)).astype(np.float32)
    x = np.ascontiguousarray(values[:, ::2])
    expected, _ = engine.forward(x)
    with torch.no_grad():
        assert_matches(expected, model(torch.from_numpy(x), mode="threshold").logits)
    big_endian = x.astype(np.dtype(">f4"))
    for variant in (
        x.astype(np.float64),
        x.astype(np.int16),
        np.asfortranarray(x),
        values[:, ::2],
        big_endian,
    ):
        logits, _ = engine.forward(variant)
        np.testing.assert_array_equal(logits, expected)


def test_a_batch_of_zero_gives_empty_outputs():
    engine = Engine(make_model(6, [(2, 4), (3, 2)], 5))
    logits, masks = engine.forward(np.zeros((0, 6), np.float32), "sample")
    assert logits.shape == (0, 5) and logits.dtype == np.float32
    assert [m.shape for m in masks] == [(0, 2), (0, 3)] and all(m.dtype == np.uint8 for m in masks)


def test_batch_one_outputs_are_not_overwritten_by_the_next_call():
    """The batch-1 path reuses its buffers: what it returned must be the caller's own arrays."""
    engine = Engine(make_model(6, [(4, 4)], 3))
    rng = np.random.default_rng(7)
    first = rng.random((1, 6), dtype=np.float32)
    logits, masks = engine.forward(first, "sample", seed=1)
    kept = logits.copy(), [m.copy() for m in masks]
    for _ in range(5):
        engine.forward(rng.random((1, 6), dtype=np.float32) * 10, "sample")
    np.testing.assert_array_equal(logits, kept[0])
    assert all(np.array_equal(m, k) for m, k in zip(masks, kept[1], strict=True))


def test_the_engine_runs_without_torch(tmp_path):
    """A fresh interpreter loads a saved run and runs it (both paths); torch is never imported, and the
    logits are the PyTorch model's."""
    import subprocess
    import sys

    from condnet.nn.checkpoint import save_checkpoint

    model = make_model(6, [(4, 4), (2, 8)], 3)
    save_checkpoint(model, tmp_path)
    x = np.random.default_rng(8).random((5, 6), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys
import numpy as np
from condnet.engine import Engine
engine = Engine.from_run({str(tmp_path)!r})
x = np.load({str(tmp_path / "x.npy")!r})
logits = np.concatenate([engine.forward(x)[0], engine.forward(x[:1])[0]])
np.save({str(tmp_path / "logits.npy")!r}, logits)
assert "torch" not in sys.modules, "torch was imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    logits = np.load(tmp_path / "logits.npy")
    with torch.no_grad():
        expected = model(torch.from_numpy(x), mode="threshold").logits
    assert_matches(logits[:5], expected)
    assert_matches(logits[5:], expected[:1])


def test_trained_model_threshold_error_equals_evaluate(idx_dir):
    """On a trained run, the engine's threshold-mode test error is evaluate()'s, exactly."""
    from condnet.config import load_config
    from condnet.data.splits import load_idx_splits
    from condnet.train.evaluate import evaluate
    from condnet.train.loop import train

    sets = ["data.name=idx", f'data.dir="{idx_dir}"', "data.valid_size=200", "model.widths=[32, 16]",
            "model.block_size=[8, 4]", "model.tau=0.5", "train.optimizer=adam", "train.loss_reduction=mean",
            "train.lr_net=0.01", "train.lr_policy=0.01", "train.lambda_s=1", "train.lambda_v=1",
            "train.max_epochs=3", "train.batch_size=32"]  # fmt: skip
    cfg = load_config(None, sets)
    splits = load_idx_splits(idx_dir, 200)
    model = train(cfg, splits).model
    expected = evaluate(model, splits.x_test, splits.y_test, "threshold").error
    engine = Engine(model)
    x = splits.x_test.numpy()
    for batch in (1, len(x)):  # the fused batch-1 path and the batched path
        predictions = np.concatenate(
            [engine.forward(x[i : i + batch])[0].argmax(1) for i in range(0, len(x), batch)]
        )
        assert np.mean(predictions != splits.y_test.numpy()) == expected


def test_kernel_tanh_is_within_four_ulp_of_the_true_tanh():
    """The engine's vectorizable tanh (a rational fit) against float64 tanh, over every float32 scale."""
    from numba import njit

    from condnet.engine.kernels import tanh

    @njit
    def apply(xs, out):
        for i in range(xs.shape[0]):
            out[i] = tanh(xs[i])

    grid = np.linspace(-12, 12, 400_001, dtype=np.float32)
    tiny = np.geomspace(1e-38, 1, 20_000).astype(np.float32)
    x = np.concatenate([grid, tiny, -tiny, np.float32([0.0, 3e38, -3e38])])
    y = np.empty_like(x)
    apply(x, y)
    exact = np.tanh(x.astype(np.float64))
    assert y[-3] == 0.0 and np.all(np.abs(y) <= 1.0)
    nonzero = exact != 0
    relative = np.abs(y[nonzero] - exact[nonzero]) / np.abs(exact[nonzero])
    assert relative.max() < 4 * np.finfo(np.float32).eps  # 4 ulp; measured 2.8e-7


def test_mask_decisions_follow_the_models_formula():
    """kernels.decide_example (a POLICY layer) against the policy's own float32 formula in PyTorch, ties
    and overflow included."""
    from condnet.engine.kernels import POLICY, SAMPLE, THRESHOLD, decide_example

    def decide(logits, p_min, p_max, mode, noise, out):
        gates = np.empty(logits.shape[1], np.float32)
        for b in range(len(logits)):
            decide_example(POLICY, 0, logits[b], np.float32(0), p_min, p_max, mode, noise[b], out[b], gates)

    rng = np.random.default_rng(5)
    logits = np.concatenate(
        [rng.standard_normal((500, 12)) * 6, np.float32([[0.0] * 6 + [200.0] * 3 + [-200.0] * 3])]
    )
    logits = logits.astype(np.float32)
    p_min, p_max = np.float32(0.01), np.float32(0.99)
    sigma = (p_min + (p_max - p_min) * torch.sigmoid(torch.from_numpy(logits))).numpy()
    noise = rng.random(logits.shape, dtype=np.float32)
    out = np.empty(logits.shape, np.uint8)
    decide(logits, p_min, p_max, THRESHOLD, noise, out)
    np.testing.assert_array_equal(out, sigma > 0.5)
    decide(logits, p_min, p_max, SAMPLE, noise, out)
    np.testing.assert_array_equal(out, noise < sigma)


@pytest.mark.parametrize("batch", [2, 3, 4, 9])  # one example at a time up to SMALL_BATCH, then batched
def test_seeded_draws_are_the_seeds_noise_against_the_models_sigma(batch):
    """Block on iff noise < sigma, with noise = numpy's default_rng(seed).random((n_hidden, batch,
    max_blocks)) and sigma the PyTorch model's given the masks of the layers before: the same masks
    whichever path (per example or batched) computes them."""
    model = make_model(20, [(10, 4), (6, 8)], 3)
    x = np.random.default_rng(3).random((batch, 20), dtype=np.float32)
    logits, masks = Engine(model).forward(x, "sample", seed=11)
    noise = np.random.default_rng(11).random((2, batch, 10), dtype=np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x), masks=[torch.from_numpy(m.astype(np.float32)) for m in masks])
    for layer, (mask, k) in enumerate(zip(masks, (10, 6), strict=True)):
        np.testing.assert_array_equal(mask, noise[layer, :, :k] < out.layers[layer].sigma.numpy())
    assert_matches(logits, out.logits)


@pytest.mark.parametrize("width", [8, 16])
def test_both_vector_widths_match_the_model(width):
    """The micro-kernel's 8-wide and AVX-512 products (where the CPU has it) through the whole engine:
    blocks of 16, 10 and 64 outputs, 700 inputs, groups beyond 12 examples."""
    from condnet.engine import native

    default = native.vector_width()
    if native.vector_width(width) != width:
        pytest.skip("this CPU has no AVX-512")
    try:
        model = make_model(700, [(5, 16), (3, 10), (2, 64)], 7)
        rng = np.random.default_rng(width)
        x = rng.random((50, 700), dtype=np.float32)
        masks = [(rng.random((50, k)) < 0.6).astype(np.float32) for k in (5, 3, 2)]
        logits, _ = Engine(model).forward(x, masks=masks)
    finally:
        native.vector_width(default)
    with torch.no_grad():
        expected = model(torch.from_numpy(x), masks=[torch.from_numpy(m) for m in masks]).logits
    assert_matches(logits, expected)


@pytest.mark.parametrize("kind", ["condnet", "bdnn"])
@pytest.mark.parametrize("batch", [1, 3])  # batch 1, and a gated net's small batch, one example at a time
def test_unseeded_small_batch_draws_follow_the_policy(kind, batch):
    # batches of 1-3 without a seed draw inside the kernel (numba's generator): the block rates must still
    # be sigma's (condnet) or tau's (bdnn), and the logits those of the PyTorch model given the same masks
    model = make_model(6, [(16, 2)], 3, kind=kind)
    engine = Engine(model)
    x = np.random.default_rng(7).random((batch, 6), dtype=np.float32)
    draws = [engine.forward(x, "sample") for _ in range(4000)]
    rate = np.mean([masks[0] for _, masks in draws], axis=0)  # (batch, 16): each block's rate
    with torch.no_grad():
        expected = model(torch.from_numpy(x), mode="threshold")
    p = expected.layers[0].sigma.numpy() if kind == "condnet" else np.full((batch, 16), model.cfg.tau[0])
    assert np.all(np.abs(rate - p) < 5 * np.sqrt(p * (1 - p) / 4000) + 1e-3)
    logits, masks = draws[-1]
    with torch.no_grad():
        given = model(torch.from_numpy(x), masks=[torch.from_numpy(masks[0].astype(np.float32))]).logits
    assert_matches(logits, given)


# helpers the fastmath kernels call that must not be fastmath (see kernels.py)
NON_FASTMATH_HELPERS = ("int8_input_scales", "int8_scaled", "decide_example", "decide_examples")


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory):
    """A process that imports the engine and makes one with nothing in numba's cache (a fresh install), and
    prints, for the helpers the fastmath kernels must not compile with their flags, how many of their LLVM
    instructions carry fastmath flags (inspection works for code compiled, not loaded from the cache)."""
    import os
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from condnet.checkpoint import Checkpoint, expected_shapes
from condnet.config import Config, ModelConfig, validate
from condnet.engine import Engine, kernels
print("imported", file=sys.stderr)
m = validate(Config(model=ModelConfig(widths=[8], block_size=[4]))).model
Engine(Checkpoint(6, 3, m, {k: np.zeros(s, np.float32) for k, s in expected_shapes(6, 3, m).items()}))
for name in sys.argv[1:]:
    for ir in getattr(kernels, name).inspect_llvm().values():
        print(name, sum(" fast " in line for line in ir.splitlines()))
"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba"))}  # nothing cached
    return subprocess.run(
        [sys.executable, "-c", code, *NON_FASTMATH_HELPERS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_fresh_install_says_when_it_compiles(fresh_install):
    """In a fresh install the import and the first batch compiled for minutes without a word (issue 23):
    the import says so before it compiles the batch-1 kernel; making an engine says nothing more."""
    assert fresh_install.returncode == 0, fresh_install.stderr
    said = [
        line
        for line in fresh_install.stderr.splitlines()
        if line.startswith("condnet:") or line == "imported"
    ]
    assert said == [
        "condnet: compiling the engine's batch-1 kernels for this CPU (about 40 s, once: numba caches them)",
        "imported",
    ]


def test_the_non_fastmath_helpers_compile_with_their_own_flags_once():
    """The fastmath kernels call helpers that must not be fastmath: the int8 input scales and scaling
    (batch 1 and batches must give the same scales) and the decisions (exp overflows to inf for very
    negative scores). Left to compile on first use, numba compiled them with the flags of the fastmath
    kernel that called them first (numba #7168: 5, 20, 113 and 113 fastmath instructions in a fresh
    install), int8_scaled once per type of its offset (a literal 0 and int64). Now: one version each, and
    no caller can compile another."""
    from condnet.engine import kernels

    for name in NON_FASTMATH_HELPERS:
        helper = getattr(kernels, name)
        assert len(helper.signatures) == 1 and not helper._can_compile, name


def test_a_fresh_install_compiles_the_non_fastmath_helpers_without_fastmath(fresh_install):
    assert fresh_install.returncode == 0, fresh_install.stderr
    assert fresh_install.stdout.split() == [word for name in NON_FASTMATH_HELPERS for word in (name, "0")]


def test_the_first_batch_says_it_compiles_and_batch_one_never_does(monkeypatch, caplog):
    """The batch kernel compiles at the first batch (about a minute): said then, and only while it is
    pending; a batch-1 call never compiles anything (its kernel is compiled at import)."""
    from condnet.engine import kernels

    engine = Engine(make_model(6, [(2, 4)], 3))
    x = np.zeros((8, 6), np.float32)
    with caplog.at_level("WARNING", logger="condnet"):
        engine.forward(x)
        engine.forward(x[:1])
        assert caplog.text == ""
        monkeypatch.setattr(kernels, "batch_kernel_pending", lambda: True)
        engine.forward(x[:1])
        assert caplog.text == ""
        engine.forward(x)
    assert "compiling the engine's batch kernel for this CPU (about a minute" in caplog.text


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_every_packed_array_starts_on_a_cache_line(weights):
    """A 16-float panel row is one 64-byte load only if the buffer and every array in it start on a cache
    line (unaligned, each load is split across two: batch 1 on 784-256-10 took 1.3x longer)."""
    from condnet.engine import kernels

    engine = Engine(make_model(30, [(3, 16), (2, 33)], 7), weights=weights)
    assert engine._weights.ctypes.data % 64 == 0
    offsets = engine._meta[:, [kernels.M_TILES, kernels.M_BIAS, kernels.M_PANELS, kernels.M_Z, kernels.M_D,
                               kernels.M_Z_PANELS]]  # fmt: skip
    assert (offsets[offsets != kernels.NONE] % 16 == 0).all()


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_a_large_dense_layer_shares_its_outputs_between_threads(weights):
    """A dense net's layer of kernels.PARALLEL_MIN_WEIGHTS weights or more, for fewer than
    kernels.SPLIT_OUTPUTS_BELOW examples (batch 1 included), on two threads: the threads take chunks of
    32 outputs (shared_product.c; 1000 outputs: the last chunk is one panel of 8), against the PyTorch
    model; from SPLIT_OUTPUTS_BELOW examples the split by examples; a NaN at batch 1 is still refused."""
    from condnet.engine import kernels
    from test_engine_bf16 import rounded

    model = make_model(1501, [(1, 1000), (1, 24)], 7, kind="nn", activation="relu")  # odd: bf16's halves
    assert 1501 * 1000 >= kernels.PARALLEL_MIN_WEIGHTS
    assert (kernels.SPLIT_OUTPUTS_BELOW + 1) * 1501 * 1000 >= kernels.PARALLEL_SPLIT_MIN_WORK
    engine = Engine(model, threads=2, weights=weights)
    assert engine._one_by_batch and not Engine(model, threads=1)._one_by_batch
    reference = rounded(model) if weights == "bf16" else model
    x = np.random.default_rng(5).standard_normal((kernels.SPLIT_OUTPUTS_BELOW + 1, 1501)).astype(np.float32)
    for batch in (1, 2, 3, kernels.SPLIT_OUTPUTS_BELOW - 1, kernels.SPLIT_OUTPUTS_BELOW + 1):
        logits, masks = engine.forward(x[:batch])
        assert [m.shape for m in masks] == [(batch, 1), (batch, 1)] and all(m.all() for m in masks)
        with torch.no_grad():
            assert_matches(logits, reference(torch.from_numpy(x[:batch])).logits)
    x[0, 1500] = np.nan
    with pytest.raises(ValueError, match="NaN, infinite"):
        engine.forward(x[:1])


def test_two_threads_only_where_they_paid():
    """Which float32 products take the second thread (hand-picked cases around the thresholds measured in
    RESULTS 10.17 and 10.22): a dense layer splitting its examples (an OpenMP region, 70-80 us to wake its
    sleeping thread) only from PARALLEL_SPLIT_MIN_WORK: 784-16-10's first layer at batch 256 (3.2 M
    multiply-adds) took 140 us on two threads against 61 on one, and went to two (PARALLEL_MIN_WORK,
    3 M); a gated layer of many output blocks still from 3 M; a dense layer read by few examples from its
    weights."""
    from condnet.engine.kernels import ONE_THREAD, PARALLEL, SHARED_OUTPUTS, product_threads

    assert product_threads(1, 256, 784, 16, 256 * 784 * 16, 2) == ONE_THREAD
    assert product_threads(1, 50, 784, 512, 50 * 784 * 512, 2) == ONE_THREAD  # 20 M
    assert product_threads(1, 256, 784, 256, 256 * 784 * 256, 2) == PARALLEL  # 51 M
    assert product_threads(2, 256, 784, 256, 256 * 784 * 256, 2) == PARALLEL  # two blocks: examples split
    assert product_threads(16, 96, 1024, 1024, 96 * 1024 * 1024 // 4, 2) == PARALLEL  # 25 M by blocks
    assert product_threads(16, 50, 1024, 1024, 3_000_000, 2) == PARALLEL
    assert product_threads(16, 50, 1024, 1024, 2_999_999, 2) == ONE_THREAD
    assert product_threads(1, 8, 1501, 1000, 8 * 1501 * 1000, 2) == SHARED_OUTPUTS
    assert product_threads(1, 8, 300, 300, 8 * 300 * 300, 2) == ONE_THREAD  # 0.7 M, 90,000 weights
    assert product_threads(1, 256, 784, 256, 256 * 784 * 256, 1) == ONE_THREAD


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_a_gated_batch_shares_its_output_blocks_between_threads(weights):
    """A gated layer of many output blocks with kernels.PARALLEL_MIN_WORK multiply-adds or more, on two
    threads: the threads take whole output blocks (shared_product.c's block products, the rows finished
    by the caller), against the PyTorch model given the same masks (some examples with no block on, a
    block on for no example); a NaN input is still refused. (Three threads: test_shared_product.py.)"""
    from condnet.engine import kernels
    from test_engine_bf16 import rounded

    model = make_model(1024, [(16, 64), (12, 48)], 7)
    reference = rounded(model) if weights == "bf16" else model
    rng = np.random.default_rng(0)
    batch = 96
    x = rng.standard_normal((batch, 1024)).astype(np.float32)
    masks = [(rng.random((batch, k)) < 0.5).astype(np.float32) for k in (16, 12)]
    masks[0][:3] = 0  # examples with no block on
    masks[1][:, 5] = 0  # a block no example has on
    assert batch * 1024 * 16 * 64 * masks[0].mean() >= kernels.PARALLEL_MIN_WORK
    engine = Engine(model, threads=2, weights=weights)
    logits, used = engine.forward(x, "threshold", masks=masks)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), masks=[torch.from_numpy(m) for m in masks]).logits
    assert_matches(logits, expected)
    assert all(np.array_equal(u, m) for u, m in zip(used, masks, strict=True))
    x[40, 7] = np.nan
    with pytest.raises(ValueError, match="NaN, infinite"):
        engine.forward(x, "threshold", masks=masks)


@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("layers", [[(4, 4), (4, 3)], [(4, 4), (3, 4)]])  # as many blocks per layer, or not
def test_a_batchs_masks_are_its_own(batch, layers):
    """The masks a batch returns are its own: another call, or writing into one layer's mask, changes no
    other mask (each is (batch, blocks), C-contiguous)."""
    model = make_model(10, layers, 3)
    engine = Engine(model)
    x = np.random.default_rng(3).random((batch, 10), dtype=np.float32)
    _, first = engine.forward(x, "sample", seed=0)
    kept = [m.copy() for m in first]
    engine.forward(x, "sample", seed=1)
    first[0][:] = 7
    assert np.array_equal(first[1], kept[1])
    _, again = engine.forward(x, "sample", seed=0)
    assert all(np.array_equal(a, k) for a, k in zip(again, kept, strict=True))
    assert [m.shape for m in again] == [(batch, k) for k, _ in layers]
    assert all(m.flags.c_contiguous for m in again)
