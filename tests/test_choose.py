"""Choosing configs from a finished search (condnet.search.choose): read from the journal alone, which
stays byte for byte as it was, and picked on validation by hand-checked rules."""

from __future__ import annotations

import optuna
import pytest

from condnet.errors import CondnetError
from condnet.search.choose import complete_trials, front_picks, pareto, rival_of


def journal_with(path, name: str, points: list[tuple[float, float] | None]) -> None:
    """A study of finished trials (validation error, latency); None is a failed trial."""
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    study = optuna.create_study(
        study_name=name, storage=optuna.storages.JournalStorage(backend), directions=["minimize"] * 2
    )
    for i, point in enumerate(points):
        state = optuna.trial.TrialState.FAIL if point is None else optuna.trial.TrialState.COMPLETE
        config = f"seed = {i}\n"
        study.add_trial(optuna.trial.create_trial(state=state, values=point, user_attrs={"config": config}))


def test_trials_come_from_the_journal_alone_and_leave_it_unchanged(tmp_path):
    path = tmp_path / "journal.log"
    journal_with(path, "dense", [(0.03, 10.0), None, (0.02, 20.0)])
    before = path.read_bytes()
    trials = complete_trials(path, "dense", space="dense")
    assert path.read_bytes() == before  # create_study(load_if_exists=True) appended a record per read
    assert [(t.number, t.valid_error, t.b1_latency_us, t.config) for t in trials] == [
        (0, 0.03, 10.0, "seed = 0\n"),
        (2, 0.02, 20.0, "seed = 2\n"),
    ]
    assert trials[1].name == "dense_trial2"


def test_a_missing_journal_or_study_is_named(tmp_path):
    with pytest.raises(CondnetError, match="no search journal at .*nowhere.log"):
        complete_trials(tmp_path / "nowhere.log", "dense", space="dense")
    assert not (tmp_path / "nowhere.log").exists()
    journal_with(tmp_path / "journal.log", "dense", [(0.03, 10.0)])
    with pytest.raises(CondnetError, match="holds no study named 'topk'.*'dense'"):
        complete_trials(tmp_path / "journal.log", "topk", space="topk")


def test_pareto_and_rival_by_hand(tmp_path):
    path = tmp_path / "journal.log"
    # (error, latency): trial 1 is beaten by trial 0 (slower and worse), trial 3 ties trial 2's latency
    journal_with(path, "dense", [(0.030, 10.0), (0.035, 12.0), (0.020, 20.0), (0.025, 20.0), (0.010, 90.0)])
    dense = complete_trials(path, "dense", space="dense")
    assert [t.number for t in pareto(dense)] == [0, 2, 4]
    journal_with(tmp_path / "gated.log", "gated", [(0.022, 25.0), (0.050, 5.0)])
    gated = complete_trials(tmp_path / "gated.log", "gated", space="topk")
    assert rival_of(gated[0], dense).number == 2  # the lowest error at most 25 us
    assert rival_of(gated[1], dense) is None  # no dense trial at most 5 us


def test_a_trial_brings_its_load_entropy_when_the_search_kept_it(tmp_path):
    backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
    study = optuna.create_study(
        study_name="s", storage=optuna.storages.JournalStorage(backend), directions=["minimize"] * 2
    )
    for attrs in ({"config": "seed = 0\n", "share_entropy_bits": [1.5, 0.0]}, {"config": "seed = 1\n"}):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, values=(0.1, 5.0), user_attrs=attrs
            )
        )
    assert [t.share_entropy_bits for t in complete_trials(tmp_path / "journal.log", "s", "x")] == [
        (1.5, 0.0),
        None,
    ]


def test_front_picks_by_hand(tmp_path):
    points = [(0.030, 10.0), (0.020, 20.0), (0.015, 40.0), (0.010, 90.0), (0.005, 200.0)]
    journal_with(tmp_path / "dense.log", "dense", points)
    dense = complete_trials(tmp_path / "dense.log", "dense", space="dense")
    # topk: trial 0 is 0.005 above its rival (dense 1, 20 us), trial 1 0.003 below its (dense 2, 40 us)
    journal_with(tmp_path / "topk.log", "topk", [(0.025, 25.0), (0.012, 45.0), (0.040, 30.0)])
    topk = complete_trials(tmp_path / "topk.log", "topk", space="topk")
    journal_with(tmp_path / "hash.log", "hash", [(0.050, 5.0)])  # faster than every dense trial: gap 1 - 0.05
    hashed = complete_trials(tmp_path / "hash.log", "hash", space="hash")
    gated, picked = front_picks(dense, [topk, hashed], per_space=1, dense_step=2)
    assert [t.name for t in gated] == ["topk_trial1", "hash_trial0"]
    # every 2nd point of the dense front (0, 2, 4), the slowest (4), topk_trial1's rival (2) and the front's
    # next point above each pick (3 above topk_trial1's 45 us, 0 above hash_trial0's 5 us)
    assert [t.number for t in picked] == [0, 2, 3, 4]
    gated, picked = front_picks(dense, [topk], per_space=2, dense_step=3)
    assert [t.name for t in gated] == ["topk_trial1", "topk_trial0"]  # trial 2 is not on topk's front
    # front 0 and 3, the slowest 4, rivals 2 and 1, the next points 3 and 2
    assert [t.number for t in picked] == [0, 1, 2, 3, 4]
    _, picked = front_picks(dense, [topk], per_space=1, dense_step=4)
    assert [t.number for t in picked] == [0, 2, 3, 4]  # front 0 and 4, rival 2, next 3
