"""The run directory against a hostile user (issue 20): each test reproduces a probe's failure."""

from __future__ import annotations

import json
import os

import pytest

from condnet.errors import CondnetError
from condnet.run_dir import CONFIG, FINISHED, RunDir


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_a_linked_lock_is_refused_and_its_target_untouched(tmp_path, link):
    precious = tmp_path / "precious.txt"
    precious.write_text("precious\n")
    link(precious, tmp_path / ".victim.lock")
    with pytest.raises(CondnetError, match="link"), RunDir(tmp_path / "victim").lock():
        pass
    assert precious.read_text() == "precious\n"


def test_finished_json_lists_only_the_runs_files(tmp_path):
    """A kill while finished.json was written leaves `.finished.json.tmp`; the next commit must neither
    list it nor ship it."""
    run = RunDir(tmp_path / "run")
    with run.lock():
        partial = run.start(resume=False)
        (partial / CONFIG).write_text("seed = 0\n")
        (partial / f".{FINISHED}.tmp").write_text('{"finished": "cut sh')
        run.commit()
    listed = json.loads((run.path / FINISHED).read_text())["files"]
    assert listed == [CONFIG]
    assert sorted(p.name for p in run.path.iterdir()) == sorted([CONFIG, FINISHED])


def test_a_flipped_bit_in_the_training_state_is_refused(idx_dir, tmp_path):
    """One bit flipped at 20 % of train_state.pt (inside a tensor) was loaded and silently changed the
    resumed run; the state now carries its SHA-256, checked before torch reads it."""
    from condnet.data.splits import load_idx_splits
    from condnet.errors import TrainingError
    from condnet.train.loop import TrainState
    from test_training import small_config

    cfg = small_config(idx_dir)
    splits = load_idx_splits(idx_dir, 200)
    path = tmp_path / "train_state.pt"
    TrainState.new(cfg, splits).save(path)
    TrainState.new(cfg, splits).load(path)  # intact: loads
    data = bytearray(path.read_bytes())
    data[len(data) // 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="train_state.pt"):
        TrainState.new(cfg, splits).load(path)


def test_an_edited_config_is_refused_on_resume(idx_dir, tmp_path, capsys):
    """tanh -> relu in `.NAME.partial/config.toml` after an epoch was applied mid-run (the check
    compared the file with itself); now the saved state remembers its config and says what changed."""
    from condnet.cli import main
    from test_training import SMALL

    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--set", f"data.dir={json.dumps(str(idx_dir))}"]
    for item in [*SMALL, "train.max_epochs=2"]:
        args += ["--set", item]
    assert main(args) == 0
    partial = RunDir(out).partial
    partial.mkdir()  # an unfinished run as a kill after epoch 1 leaves it: the finished run's files
    (partial / CONFIG).write_text((out / CONFIG).read_text().replace('"tanh"', '"relu"'))
    from condnet.config import load_config
    from condnet.data.splits import load_idx_splits
    from condnet.train.loop import TrainState

    cfg = load_config(out / CONFIG)
    splits = load_idx_splits(idx_dir, 200)
    TrainState.new(cfg, splits).save(partial / "train_state.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) != 0
    assert "model.activation = 'relu' (was 'tanh')" in capsys.readouterr().err


def test_summary_of_a_run_whose_metrics_lack_a_key_says_which(idx_dir, tmp_path, capsys):
    from condnet.cli import main
    from test_training import SMALL

    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--set", f"data.dir={json.dumps(str(idx_dir))}"]
    for item in [*SMALL, "train.max_epochs=1"]:
        args += ["--set", item]
    assert main(args) == 0
    finished = json.loads((out / FINISHED).read_text())
    del finished["sha256"]  # a run finished before the hashes were recorded: its files are read as they are
    (out / FINISHED).write_text(json.dumps(finished))
    metrics = json.loads((out / "metrics.json").read_text())
    del metrics["macs"]
    (out / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert main(["summary", str(out)]) != 0
    err = capsys.readouterr().err
    assert "metrics.json lacks macs" in err and "Traceback" not in err


def test_a_directory_or_binary_config_is_named_as_such(tmp_path):
    from condnet.config import load_config
    from condnet.errors import ConfigError

    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="is not text"):
        load_config(binary)


def test_a_packaged_config_is_found_by_name_from_anywhere(tmp_path, monkeypatch):
    from condnet.config import load_config

    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_config("default.toml").model.widths == [1024, 1024]
    assert load_config("frontier/mnist_best").model.router == "tree"


def _train(idx_dir, out, *extra):
    from condnet.cli import main
    from test_training import SMALL

    args = ["train", "--out", str(out), "--set", f"data.dir={json.dumps(str(idx_dir))}"]
    for item in [*SMALL, "train.max_epochs=1", *extra]:
        args += ["--set", item]
    assert main(args) == 0


def test_a_checkpoint_swapped_in_from_another_run_is_refused(idx_dir, tmp_path, capsys):
    """Another same-config run's model.json + model.safetensors copied in: eval reported the other
    model while summary kept the original metrics. finished.json now records every file's SHA-256."""
    import shutil

    from condnet.cli import main

    _train(idx_dir, tmp_path / "a")
    _train(idx_dir, tmp_path / "b", "seed=1")
    for name in ("model.json", "model.safetensors"):
        shutil.copy(tmp_path / "b" / name, tmp_path / "a" / name)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a")]) != 0
    err = capsys.readouterr().err
    assert "is not the file the run finished with" in err and "model." in err


def test_an_edited_seed_in_a_finished_run_is_refused(idx_dir, tmp_path, capsys):
    from condnet.cli import main

    _train(idx_dir, tmp_path / "a")
    config = tmp_path / "a" / CONFIG
    config.write_text(config.read_text().replace("seed = 0", "seed = 5"))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a"), "--mode", "sample"]) != 0
    assert "config.toml is not the file the run finished with" in capsys.readouterr().err


def test_the_engine_refuses_a_swapped_checkpoint_too(idx_dir, tmp_path):
    import shutil

    from condnet.engine import Engine

    _train(idx_dir, tmp_path / "a")
    _train(idx_dir, tmp_path / "b", "seed=1")
    Engine.from_run(tmp_path / "a")
    for name in ("model.json", "model.safetensors"):
        shutil.copy(tmp_path / "b" / name, tmp_path / "a" / name)
    with pytest.raises(CondnetError, match="is not the file the run finished with"):
        Engine.from_run(tmp_path / "a")


def test_force_onto_a_symlinked_out_is_refused_before_anything_changes(idx_dir, tmp_path, capsys):
    """`--force` onto a symlinked --out committed the run, then exited 2 ("Cannot call rmtree on a
    symbolic link") and every later write failed until `.link.old` was removed by hand."""
    target = tmp_path / "target"
    _train(idx_dir, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    (tmp_path / "link").symlink_to(target)
    from condnet.cli import main
    from test_training import SMALL

    capsys.readouterr()
    args = ["train", "--out", str(tmp_path / "link"), "--force"]
    for item in [*SMALL, "train.max_epochs=1", f"data.dir={json.dumps(str(idx_dir))}"]:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and str(target) in err  # says what to pass instead
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".target.lock", "link", "target"]


@pytest.mark.parametrize("kind", ["partial", "old"])
def test_a_symlinked_sibling_is_refused(tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (tmp_path / f".run.{kind}").symlink_to(elsewhere)
    with pytest.raises(CondnetError, match="symbolic link"), RunDir(tmp_path / "run").lock():
        pass
    assert (elsewhere / "keep.txt").read_text() == "keep"


def _fake(path, text, finished):
    path.mkdir()
    (path / CONFIG).write_text(text)
    if finished:
        (path / FINISHED).write_text("{}")


@pytest.mark.parametrize(
    "state",
    ["finished in .partial, not renamed", "between the renames of --force", "old run aside, nothing new"],
)
def test_every_interrupted_commit_gets_one_advice_that_works(tmp_path, capsys, state):
    """Killed while a run was put in place, eval advised --resume, and --resume then said "no unfinished
    run to resume" (exit 2), or eval said "no run" with the run in `.NAME.old`."""
    from condnet.cli import main

    run = RunDir(tmp_path / "run")
    if state == "finished in .partial, not renamed":
        _fake(run.partial, "new", finished=True)
    elif state == "between the renames of --force":
        _fake(tmp_path / ".run.old", "old", finished=True)
        _fake(run.partial, "new", finished=True)
    else:
        _fake(tmp_path / ".run.old", "old", finished=True)
    with pytest.raises(CondnetError, match=r"condnet train --resume .*run` puts it in place") as advice:
        run.require_finished()
    assert "unfinished run" not in str(advice.value)
    capsys.readouterr()
    assert main(["train", "--resume", str(run.path)]) == 0  # the advice works the first time
    assert "nothing left to resume" in capsys.readouterr().out
    assert run.is_finished() and not run.has_partial()
    assert (run.path / CONFIG).read_text() == ("old" if state.startswith("old") else "new")


def test_a_partial_killed_before_its_config_is_not_an_unfinished_run(tmp_path):
    """Killed before config.toml reached `.NAME.partial`, eval and train advised --resume, which said
    there was nothing to resume; such a partial holds nothing and is not offered."""
    run = RunDir(tmp_path / "run")
    run.partial.mkdir()
    (run.partial / ".config.toml.tmp").write_text("seed = ")
    assert not run.has_partial()
    with pytest.raises(CondnetError, match="no run at") as error:
        run.require_finished()
    assert "--resume" not in str(error.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/condnet-pwned",))


def _state_cases(state: dict) -> dict:
    """Training states a hostile user could write, each behind a valid header (the hash is no secret)."""
    import io
    import pickle

    import torch

    def saved(value) -> bytes:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue()

    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.5).state_dict()
    return {
        "malicious pickle": pickle.dumps(_Evil()),
        "random bytes": bytes(range(256)) * 16,
        "missing keys": saved({k: v for k, v in state.items() if k not in ("masks_rng", "history")}),
        "a list": saved(list(state.values())),
        "a wrong random state": saved({**state, "masks_rng": {"bit_generator": "PCG64", "state": 3}}),
        "another optimizer's state": saved({**state, "optimizer": sgd}),
    }


def test_a_hostile_training_state_is_refused_in_one_line(idx_dir, tmp_path):
    """Issue 20, failure 11: a malicious pickle surfaced as a raw UnpicklingError advising
    weights_only=False; missing keys, a list or a wrong RNG state as KeyError/TypeError/RuntimeError; an
    optimizer edited adam -> sgd as KeyError: 'momentum' in the next step."""
    import hashlib
    import io

    import torch

    from condnet.data.splits import load_idx_splits
    from condnet.errors import TrainingError
    from condnet.train.loop import STATE_MAGIC, TrainState
    from test_training import small_config

    cfg = small_config(idx_dir)
    splits = load_idx_splits(idx_dir, 200)
    path = tmp_path / "train_state.pt"
    TrainState.new(cfg, splits).save(path)
    state = torch.load(io.BytesIO(path.read_bytes().split(b"\n", 1)[1]), weights_only=True)
    for case, payload in _state_cases(state).items():
        path.write_bytes(STATE_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        with pytest.raises(TrainingError, match="train_state.pt") as error:
            TrainState.new(cfg, splits).load(path)
        assert "weights_only" not in str(error.value), case
    assert not os.path.exists("/tmp/condnet-pwned")


def test_messages_say_what_is_wrong(tmp_path, idx_dir, capsys):
    """Issue 20, failure 14: a directory where a file belongs (or the reverse) was called missing; a
    250-character --out blamed the parent directory."""
    from condnet.cli import main
    from test_training import SMALL

    a_file, a_dir = tmp_path / "file.txt", tmp_path / "dir"
    a_file.write_text("x")
    a_dir.mkdir()
    sets = [a for item in SMALL for a in ("--set", item)]
    data = ["--set", f"data.dir={json.dumps(str(idx_dir))}"]
    cases = [
        (["train", "--out", str(tmp_path / "r"), *sets, "--set", f"data.dir={json.dumps(str(a_file))}"],
         "is a file, not a directory"),
        (["search", str(a_dir), "--trials", "1", "--out", str(tmp_path / "s")], "is a directory, not a"),
        (["train", "--out", str(tmp_path / ("n" * 250)), *sets, *data], "name is too long"),
    ]  # fmt: skip
    for args, says in cases:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert says in err and "does not exist" not in err, err


def test_a_failed_write_names_its_file_and_leaves_no_tmp(tmp_path, monkeypatch):
    """Disk full named no file and left `.tmp` files in the partial."""
    import errno

    from condnet.run_dir import write_atomic

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CondnetError, match=r"cannot write .*metrics.json \(No space left on device\)"):
        write_atomic(tmp_path / "metrics.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_config_cut_short_is_named_not_read_with_defaults(idx_dir, tmp_path, capsys):
    """A config.toml cut after [model] was read with MNIST's defaults ("the data has 784 inputs, the
    checkpoint expects 144"); its recorded hash names it."""
    from condnet.cli import main

    out = tmp_path / "run"
    _train(idx_dir, out)
    config = out / CONFIG
    config.write_text(config.read_text().split("[model]")[0] + "[model]\n")
    capsys.readouterr()
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config.toml is not the file the run finished with" in err and "784" not in err
