"""Bad inputs a user tried on purpose: each gets a one-line error that says what to fix, or the right
behaviour; never a traceback or a silently wrong answer. The two forwards accept the same inputs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from condnet.cli import main
from condnet.config import Config, ModelConfig, load_config, toml_string, validate
from condnet.engine import Engine
from condnet.nn.condnet import CondNet
from condnet.run_dir import RunDir

ARCH = ["bench", "--arch", "20,32,4", "--block-size", "8", "--batch", "1", "--repeats", "1"]


def cli_error(capsys, args: list[str]) -> str:
    """Run the command line, expect exit status 2 without a traceback; return what it printed."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args, says",
    [
        ([*ARCH, "--threads", "999"], "this machine allows at most"),
        ([*ARCH, "--repeats", "0"], "at least 1"),
        ([*ARCH, "--density", "0"], "densities must be in (0, 1]"),
        (["reproduce", "mnist", "--timing-repeats", "0"], "at least 1"),
        (["reproduce", "mnist", "--threads", "-1"], "at least 1"),
        (["reproduce", "mnist", "--threads", "0"], "at least 1"),
        (["reproduce", "mnist", "--workers", "0"], "at least 1"),
    ],
)
def test_bad_command_line_values(capsys, args, says):
    assert says in cli_error(capsys, args)


def test_an_unwritable_out_directory(capsys, tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):  # as a read-only filesystem would (the tests may run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = cli_error(capsys, ["train", "--out", str(tmp_path / "ro" / "run")])
    assert "cannot write in" in err and "Permission denied" in err and "choose another --out" in err


def test_a_second_reproduce_on_the_same_out_is_refused(capsys, tmp_path):
    with RunDir(tmp_path / "runs").lock():
        err = cli_error(capsys, ["reproduce", "svhn", "--seeds", "1", "--out", str(tmp_path / "runs")])
    assert "another condnet command" in err


def test_a_named_data_directory_without_mnist_is_refused(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    for directory in ("empty", "missing"):
        path = json.dumps(str(tmp_path / directory))
        err = cli_error(capsys, ["train", "--set", f"data.dir={path}", "--out", str(tmp_path / "run")])
        assert "does not hold the four MNIST files" in err
    assert not (tmp_path / "run").exists()


def test_another_idx_dataset_named_mnist_suggests_idx(capsys, tmp_path, idx_dir):
    err = cli_error(
        capsys, ["train", "--set", f"data.dir={json.dumps(str(idx_dir))}", "--out", str(tmp_path / "r")]
    )
    assert 'data.name = "idx"' in err


@pytest.mark.parametrize("path", ["C:\\temp\\new", 'a "quoted" dir', "tab\there", "del\x7fend", "ü/ß"])
def test_any_directory_name_survives_toml(path):
    assert load_config(None, [f"data.dir={toml_string(path)}"]).data.dir == path
    cfg = validate(Config())
    cfg.data.dir = path
    from condnet.config import to_toml

    assert tomllib.loads(to_toml(cfg))["data"]["dir"] == path


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = validate(Config(model=ModelConfig(widths=[16, 8], block_size=[4, 4])))
    model = CondNet(6, 3, cfg.model).eval()
    return model, Engine(model)


def forwards(pair, x, masks=None):
    """Both forwards on the same input: the PyTorch model's and the engine's."""
    model, engine = pair
    return [lambda: model(x, masks=masks), lambda: engine.forward(x, masks=masks)]


@pytest.mark.parametrize("batch", [1, 5])
def test_both_forwards_refuse_the_same_bad_inputs(pair, batch):
    x = np.random.default_rng(0).random((batch, 6), dtype=np.float32)
    good = [np.ones((batch, 4), np.float32), np.ones((batch, 2), np.float32)]
    nan = x.copy()
    nan[0, 2] = np.nan
    cases = [
        (nan, None, "NaN"),
        (x, [], "one .* per hidden layer"),
        (x, [good[0] * 0.5, good[1]], "only 0 and 1"),
        (x, [good[0], good[1] * np.nan], "only 0 and 1"),
        (x.astype(np.complex64), None, "real-valued"),
        (x[:, :5], None, "shape"),
    ]
    for inputs, masks, says in cases:
        for forward in forwards(pair, inputs, masks):
            with pytest.raises(ValueError, match=says):
                forward()


def test_both_forwards_take_float64_and_integer_inputs_as_float32(pair):
    model, engine = pair
    x = np.random.default_rng(1).random((4, 6))
    masks = [np.ones((4, 4), np.uint8), np.array([[1, 0]] * 4, bool)]
    expected = model(torch.from_numpy(x.astype(np.float32)), masks=[torch.as_tensor(m) for m in masks]).logits
    for inputs in (x, torch.from_numpy(x)):
        assert torch.equal(model(inputs, masks=masks).logits, expected)
    np.testing.assert_allclose(
        engine.forward(x, masks=masks)[0], expected.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    integers = (x * 10).astype(np.int64)
    logits = model(integers, masks=masks).logits.detach().numpy()
    np.testing.assert_allclose(engine.forward(integers, masks=masks)[0], logits, rtol=1e-5, atol=1e-5)


def test_a_data_dir_with_backslashes_and_quotes_reaches_the_config_as_given(tmp_path, svhn_dir):
    import shutil

    weird = tmp_path / 'back\\slash \\t "quoted"'
    shutil.copytree(svhn_dir, weird)
    out = tmp_path / "runs"
    args = ["reproduce", "svhn", "--rows", "nn-208-128", "--seeds", "1", "--timing-repeats", "1",
            "--out", str(out), "--data-dir", str(weird), "--set", "data.valid_size=50",
            "--set", "train.max_epochs=1"]  # fmt: skip
    assert main(args) == 0
    assert load_config(out / "nn-208-128" / "seed-0" / "config.toml").data.dir == str(weird)


@pytest.mark.parametrize("batch", [1, 5])
def test_the_engine_takes_read_only_arrays_and_tensors_that_require_grad(pair, batch):
    """A read-only float32 array gave numba's "No matching definition", a tensor with requires_grad a
    RuntimeError (issue 20, failure 10)."""
    model, engine = pair
    x = np.random.default_rng(2).random((batch, 6), dtype=np.float32)
    expected = engine.forward(x.copy())[0]
    frozen = x.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(engine.forward(frozen)[0], expected)
    np.testing.assert_array_equal(engine.forward(torch.from_numpy(x.copy()).requires_grad_())[0], expected)


@pytest.mark.parametrize("seed", [1.5, "3", -1, True])
def test_a_seed_that_is_not_a_whole_number_is_refused(pair, seed):
    model, engine = pair
    for batch in (1, 5):
        x = np.ones((batch, 6), np.float32)
        with pytest.raises(ValueError, match="seed must be a whole number"):
            engine.forward(x, "sample", seed=seed)


HUGE_SEED = "1180591620717411303424"  # 2^70: does not fit in the 64 bits of every generator


@pytest.mark.parametrize(
    "args, says",
    [
        ([*ARCH[:-4], "--batch", "100000000", "--repeats", "1"], "--batch 100000000 needs"),
        ([*ARCH, "--seed", HUGE_SEED], "from 0 to 2^63 - 1"),
        (["eval", "nowhere", "--seed", HUGE_SEED], "from 0 to 2^63 - 1"),
        (["train", "--out", "x", "--set", f"seed={HUGE_SEED}"], "from 0 to 2^63 - 1"),
        (["train", "--out", "/"], "cannot be a run directory (it has no name)"),
        (["bench", "--arch", "20,1000000000,8,4", "--block-size", "8", "--batch", "1"], "this machine has"),
    ],
)
def test_sizes_and_seeds_beyond_the_limits_are_refused_up_front(capsys, args, says):
    """Issue 20, failures 9 and 12: these allocated gigabytes or ended in a traceback."""
    assert says in cli_error(capsys, args)


def test_a_model_too_big_for_memory_leaves_no_unfinished_run(capsys, tmp_path, idx_dir):
    out = tmp_path / "run"
    from test_training import SMALL

    args = ["train", "--out", str(out)]
    for item in [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "model.widths=[1000000000, 8]",
                 "model.block_size=[8, 8]"]:  # fmt: skip
        args += ["--set", item]
    assert "this machine has" in cli_error(capsys, args)
    assert not RunDir(out).partial.exists() and not out.exists()


def test_a_deeply_nested_model_json_is_called_corrupt(tmp_path, idx_dir, capsys):
    from test_run_dir_hostile import _train

    out = tmp_path / "run"
    _train(idx_dir, out)
    from condnet.checkpoint import read_checkpoint

    (out / "model.json").write_text("[" * 200_000)
    from condnet.errors import CheckpointError

    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(out)
