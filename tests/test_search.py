"""`condnet search` end to end on the fixture data: trials, their saved configs, the Pareto set, resuming."""

from __future__ import annotations

import csv
import json

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
    # the study resumes: asking for 2 trials again runs nothing, 3 runs one more
    assert main(["search", space, "--trials", "2", "--out", str(out)]) == 0
    assert "2 of 2 trials done; 0 to run" in capsys.readouterr().out
    assert main(["search", space, "--trials", "3", "--out", str(out)]) == 0
    with open(out / "search.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


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
