"""`condnet reproduce` and `condnet ablate` end to end on generated files; the Pareto verdicts by hand."""

from __future__ import annotations

import csv

import pytest

from condnet.cli import main
from condnet.reproduce.report import RowSummary, pareto_verdicts
from condnet.reproduce.runner import plan
from condnet.reproduce.tables import ABLATIONS, TABLES
from condnet.run_dir import FINISHED, RunDir

QUICK = ["--seeds", "1", "--timing-repeats", "1", "--set", "train.max_epochs=1"]


def summary(name, kind, latency, error):
    times = [latency] * 3  # PyTorch, engine, credited
    gated = kind != "nn"
    return RowSummary(name, kind, gated, False, 3, (error, 0.1), None, [], None, None, *times, None, None)


def test_pareto_verdicts_against_hand_made_points():
    rows = [
        summary("dense-fast", "nn", 1.0, 3.0),
        summary("dense-slow", "nn", 2.0, 2.0),
        summary("between", "condnet", 1.5, 2.5),  # beats dense-fast, the only dense net as fast
        summary("dominated", "condnet", 2.5, 2.1),  # dense-slow is faster and better by 0.1
        summary("fastest", "bdnn", 0.5, 9.0),  # no dense net is as fast
    ]
    verdicts = dict(v.split(": ", 1) for v in pareto_verdicts(rows))
    assert verdicts["between"].startswith("ON the front") and "better by 0.50 points" in verdicts["between"]
    assert (
        verdicts["dominated"].startswith("NOT on the front")
        and "misses by 0.10 points" in verdicts["dominated"]
    )
    assert "dense-slow" in verdicts["dominated"]
    assert verdicts["fastest"].startswith("ON the front, but only because no dense net")
    assert "dense-fast" not in verdicts and "dense-slow" not in verdicts


def test_row_overrides_win_over_the_command_line(tmp_path):
    jobs = plan(ABLATIONS["lambda-v"], 2, tmp_path, ["train.max_epochs=30", "train.lambda_v=99.0"])
    assert len(jobs) == 6 and {j.seed for j in jobs} == {0, 1}
    assert all(j.cfg.train.max_epochs == 10 for j in jobs)
    assert sorted({j.cfg.train.lambda_v for j in jobs}) == [0.0, 1.5625, 6.25]


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("table, fixture, valid", [("cifar10", "cifar10_dir", 40), ("svhn", "svhn_dir", 50)])
def test_reproduce_end_to_end_on_fixture_files(table, fixture, valid, tmp_path, request, capsys):
    data = request.getfixturevalue(fixture)
    out, report = tmp_path / "runs", tmp_path / "report"
    args = ["reproduce", table, *QUICK, "--workers", "2", "--out", str(out), "--report", str(report),
            "--data-dir", str(data), "--set", f"data.valid_size={valid}"]  # fmt: skip
    assert main(args) == 0
    rows = _read_csv(report / f"{table}.csv")
    assert [r["row"] for r in rows] == [row.name for row in TABLES[table].rows]
    assert all(r["status"] == "finished" and float(r["test_pass_engine_s"]) > 0 for r in rows)
    markdown = (report / f"{table}.md").read_text()
    assert all(row.name in markdown for row in TABLES[table].rows) and "front" in markdown
    assert (report / f"{table}.png").stat().st_size > 10_000

    if table != "svhn":
        return
    # resumable: a finished run is kept; an unfinished one (its .partial sibling) continues
    kept = out / "nn-208-128" / "seed-0" / "metrics.json"
    unfinished = RunDir(out / "condnet-208-128-b16" / "seed-0")
    kept_mtime = kept.stat().st_mtime_ns
    unfinished.path.rename(unfinished.partial)
    (unfinished.partial / FINISHED).unlink()
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 of 6 runs already finished; 1 to train" in printed and "1 of them continue" in printed
    assert kept.stat().st_mtime_ns == kept_mtime
    assert unfinished.is_finished() and not unfinished.has_partial()
    # a finished run is not silently reused for another config
    assert main([*args, "--set", "train.lambda_l2=0.5"]) == 2
    assert "was trained with another config" in capsys.readouterr().err


@pytest.mark.parametrize("ablation", ["no-regularizers", "lambda-s"])  # lambda-v: see the override test
def test_ablations_end_to_end(ablation, idx_dir, tmp_path):
    report = tmp_path / "report"
    args = ["ablate", ablation, *QUICK, "--out", str(tmp_path / "runs"), "--report", str(report),
            "--set", "data.name=idx", "--data-dir", str(idx_dir), "--set", "data.valid_size=200"]  # fmt: skip
    assert main(args) == 0
    rows = _read_csv(report / f"{ablation}.csv")
    assert [r["row"] for r in rows] == [row.name for row in ABLATIONS[ablation].rows]
    assert all(r["status"] == "finished" and r["epochs"] == "1" for r in rows)
    assert (report / f"{ablation}.png").stat().st_size > 10_000


def test_bad_settings_fail_before_any_run(tmp_path, capsys):
    assert main(["reproduce", "mnist", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["reproduce", "mnist", "--set", "train.nope=1", "--out", str(tmp_path)]) == 2
    assert "unknown key 'train.nope'" in capsys.readouterr().err
    assert main(["reproduce", "svhn", "--rows", "nn-1,nn-208-128", "--out", str(tmp_path)]) == 2
    assert "no row nn-1 in table svhn; its rows: condnet-208-128-b16" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_report_title_says_what_data_and_which_remedy():
    """The warm-up tables' figures carried the same title as the tables without it (docs/refigure.py
    added the words; `condnet reproduce` itself did not)."""
    from condnet.config import load_config
    from condnet.reproduce.command import report_title

    svhn = TABLES["svhn"]
    on_mnist = load_config(None, ["data.name=mnist"])
    assert report_title(svhn, on_mnist) == "svhn architectures trained on mnist"
    warmed = load_config(None, ["data.name=mnist", "train.lambda_s_warmup=5"])
    assert report_title(svhn, warmed) == "svhn architectures trained on mnist (with the lambda_s warm-up)"
    assert report_title(TABLES["mnist"], on_mnist) == "mnist"


def test_log_axes_label_2_3_5_and_7_times_a_power_of_ten():
    """A log axis spanning 2-9 % labelled only 2, 3 and 5: the warm-up tables' gated rows at 8 % sat
    under no label. 7 is added (0.15 decades from 5, as far as 3 is from 2); 4, 6, 8 and 9 would crowd."""
    from condnet.report.plots import plain_log_labels, plt

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    plain_log_labels(ax.yaxis)
    label = ax.yaxis.get_minor_formatter()
    assert [label(v, 0) for v in (0.02, 0.03, 0.05, 0.07, 7.0, 70.0)] == [
        "0.02",
        "0.03",
        "0.05",
        "0.07",
        "7",
        "70",
    ]
    assert [label(v, 0) for v in (0.04, 0.06, 0.08, 0.09, 4.0, 8.0, 9.0)] == [""] * 7
    # an axis narrower than half a decade labels every minor tick: 7.5-9.2 % had no label at all
    ax.set_ylim(7.5, 9.2)
    assert [label(v, 0) for v in (8.0, 9.0)] == ["8", "9"]
    plt.close(fig)
