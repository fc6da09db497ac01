"""`condnet search` end to end on the fixture data: trials, their saved configs, the Pareto set, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from condnet.cli import main
from condnet.config import load_config
from test_training import SMALL


def write_space(tmp_path, idx_dir, params: str, name="tiny") -> str:
    fixed = [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=1"]
    path = tmp_path / "space.toml"
    path.write_text(f"name = {json.dumps(name)}\nset = {json.dumps(fixed)}\n\n[params]\n{params}\n")
    return str(path)


def test_a_two_trial_search_end_to_end(tmp_path, idx_dir, capsys):
    params = '"model.kind" = { choices = ["nn", "condnet"] }\n'
    params += '"train.lr_net" = { low = 1e-3, high = 0.02, log = true }'
    space, out = write_space(tmp_path, idx_dir, params), tmp_path / "search"
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 0
    assert "the Pareto set" in capsys.readouterr().out
    with open(out / "search.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 2 and all(t["state"] == "COMPLETE" for t in trials)
    for t in trials:
        assert 0 <= float(t["valid_error"]) <= 1 and float(t["b1_latency_us"]) > 0
        cfg = load_config(f"{t['run_dir']}/config.toml")  # each trial's resolved config is kept
        assert cfg.model.kind == t["param:model.kind"].strip('"')
        assert cfg.train.lr_net == pytest.approx(float(t["param:train.lr_net"]))
        assert t["latency_from"] == "engine" or cfg.model.kind == "nn"
    assert (out / "pareto.csv").read_text().count("\n") >= 2
    assert (out / "journal.log").is_file()
    # the journal alone tells what each trial cost (its run may be on a machine that is gone)
    journal = optuna.storages.journal.JournalFileBackend(str(out / "journal.log"))
    study = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(journal))
    for t in study.trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert (t.user_attrs["epochs"], t.user_attrs["train_seconds"]) == (1, metrics["train_seconds"])
    # the study resumes: asking for 2 trials again runs nothing, 3 runs one more
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 0
    assert "2 of 2 trials done; 0 to run" in capsys.readouterr().out
    assert main(["search", space, "--trials", "3", "--out", str(out)]) == 0
    with open(out / "search.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 3
    # the resumed search drew new parameters (seeded as at its start, it drew trial 0's again)
    assert len({t["param:train.lr_net"] for t in trials}) == 3


def test_a_gated_trial_records_how_its_router_spread_the_validation_set(tmp_path, idx_dir):
    """The entropy of the load, from the run's masks by hand: each example gives one unit, shared evenly
    by its active blocks; a router that sends everything to one block has 0 bits."""
    import numpy as np
    import torch

    from condnet.experiment import load_run

    space, out = write_space(tmp_path, idx_dir, '"train.lr_net" = { choices = [0.01] }'), tmp_path / "search"
    assert main(["search", space, "--trials", "1", "--out", str(out)]) == 0
    journal = optuna.storages.journal.JournalFileBackend(str(out / "journal.log"))
    (trial,) = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(journal)).trials
    _, model, splits = load_run(trial.user_attrs["run_dir"])
    with torch.no_grad():
        mask = model(splits.x_valid, mode="threshold").layers[0].mask.numpy()
    load = (mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)).sum(axis=0)
    p = load[load > 0] / load.sum()
    assert trial.user_attrs["share_entropy_bits"] == [pytest.approx(float(-(p * np.log2(p)).sum()), abs=1e-4)]


@pytest.mark.parametrize(
    "params, says",
    [
        ('"train.lr_net" = { low = 0.1, high = 0.01 }', "low < high"),
        ('"train.lr_net" = 0.1', "must be a table"),
        ('"model.tau" = { choices = [0.5, 2.0] }', "model.tau"),
        ('"train.nope" = { choices = [1] }', "unknown key 'train.nope'"),
        ("", "nothing to search"),
    ],
)
def test_a_bad_space_fails_before_any_trial(tmp_path, idx_dir, capsys, params, says):
    space = write_space(tmp_path, idx_dir, params)
    assert main(["search", space, "--trials", "1", "--out", str(tmp_path / "s")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_trial_left_running_by_a_killed_search_is_failed_and_tried_again(tmp_path, idx_dir, capsys):
    import optuna

    from condnet.search.space import load_space
    from condnet.search.study import _study

    space_path = write_space(tmp_path, idx_dir, '"train.lr_net" = { choices = [0.01] }', name="killed")
    out = tmp_path / "search"
    out.mkdir()
    study = _study(load_space(space_path), out / "journal.log")
    study.ask({"train.lr_net": optuna.distributions.CategoricalDistribution(["0.01"])})  # left RUNNING
    assert main(["search", space_path, "--trials", "1", "--out", str(out)]) == 0
    states = [t.state.name for t in _study(load_space(space_path), out / "journal.log").get_trials()]
    assert states == ["FAIL", "COMPLETE"]


def test_the_committed_spaces_load():
    from pathlib import Path

    from condnet.search.space import load_space

    spaces = sorted((Path(__file__).parents[1] / "configs" / "search").glob("*.toml"))
    assert len(spaces) >= 3
    for path in spaces:
        assert load_space(path).params


def _states(space_path, storage) -> list[str]:
    from condnet.search.space import load_space
    from condnet.search.study import _study

    return [t.state.name for t in _study(load_space(space_path), storage).get_trials()]


def two_searches_share(tmp_path, idx_dir, storage: str, name: str) -> None:
    """Two `condnet search` processes (as on two machines), 4 trials asked by each, on one storage: both
    succeed, and the study holds exactly 4 trials, all complete."""
    import os
    import subprocess
    import sys

    params = '"train.lr_net" = { low = 1e-3, high = 0.02, log = true }'
    space = write_space(tmp_path, idx_dir, params, name=name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    searches = [
        subprocess.Popen([sys.executable, "-m", "condnet.cli", "search", space, "--trials", "4",
                          "--threads", "1", "--storage", storage, "--out", str(tmp_path / f"s{i}")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    for search in searches:
        _, err = search.communicate(timeout=600)
        assert search.returncode == 0, err
    assert _states(space, storage) == ["COMPLETE"] * 4


def test_two_searches_share_one_journal_without_failing_each_other(tmp_path, idx_dir):
    """The second process marked the first's running trial failed, and the first died with "Cannot tell
    a FAIL trial" (issue 20, failure 7). Now a live process's trial is left alone, and N is N in all."""
    two_searches_share(tmp_path, idx_dir, str(tmp_path / "journal.log"), "shared")


def test_trials_n_means_n_with_two_workers(tmp_path, idx_dir):
    params = '"train.lr_net" = { low = 1e-3, high = 0.02, log = true }'
    space, out = write_space(tmp_path, idx_dir, params, name="exact"), tmp_path / "search"
    assert main(["search", space, "--trials", "3", "--workers", "2", "--out", str(out)]) == 0
    assert _states(space, out / "journal.log") == ["COMPLETE"] * 3


def _journal_of_one_trial(tmp_path, idx_dir):
    space = write_space(tmp_path, idx_dir, '"train.lr_net" = { choices = [0.01] }', name="torn")
    out = tmp_path / "search"
    assert main(["search", space, "--trials", "1", "--out", str(out)]) == 0
    return space, out, out / "journal.log"


@pytest.mark.parametrize("damage", ["torn last line", "appended binary"])
def test_a_damaged_journal_tail_is_cut_and_kept(tmp_path, idx_dir, capsys, damage):
    """A truncated last line failed every later run with a JSONDecodeError traceback (failure 8)."""
    space, out, journal = _journal_of_one_trial(tmp_path, idx_dir)
    whole = journal.read_bytes()
    if damage == "torn last line":
        journal.write_bytes(whole[:-7])
        tail = whole.splitlines(keepends=True)[-1][:-7]
    else:
        tail = bytes(range(256)) * 4
        journal.write_bytes(whole + tail)
    capsys.readouterr()
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 0
    assert "after its last whole record" in capsys.readouterr().out
    assert (out / "journal.log.cut").read_bytes() == tail
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 0  # and it stays readable
    assert _states(space, journal).count("COMPLETE") == 2


def test_a_bad_line_inside_the_journal_is_named(tmp_path, idx_dir, capsys):
    space, out, journal = _journal_of_one_trial(tmp_path, idx_dir)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"op_code": 4, "garbage\n'
    journal.write_bytes(b"".join(lines))
    capsys.readouterr()
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 2
    assert "journal.log line 3 is not a journal record" in capsys.readouterr().err


def test_trials_are_counted_from_one_read_of_the_study():
    """Another process finishes a trial between two reads: counted in two reads it was in neither (done
    read before, running read after), and a fifth trial was asked for `--trials 4`."""
    from types import SimpleNamespace

    from optuna.trial import TrialState

    from condnet.search.study import _counts

    def trial(state):
        return SimpleNamespace(state=state, user_attrs={})

    before = [trial(TrialState.COMPLETE)] * 2 + [trial(TrialState.RUNNING)] * 2
    after = [trial(TrialState.COMPLETE)] * 3 + [trial(TrialState.RUNNING)]

    class Study:  # each read sees the study a little later
        reads = iter([before, after, after])

        def get_trials(self, deepcopy=False, states=None):
            trials = next(self.reads)
            return [t for t in trials if states is None or t.state in states]

    assert sum(_counts(Study())) == 4
