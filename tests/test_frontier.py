"""`condnet frontier` end to end on the fixture data, and its verdict rule against hand-made numbers."""

from __future__ import annotations

import csv
import json

import pytest

from condnet.cli import main
from condnet.config import load_config, to_toml
from condnet.reproduce.frontier import ConfigSummary, verdicts
from test_training import SMALL

TWO = (("dense", ["model.kind=nn"]), ("topk", ["model.router=topk"]))  # a dense and a gated config


def write_configs(directory, idx_dir, named) -> None:
    """One frontier config per (name, overrides), on the fixture data, trained one epoch."""
    directory.mkdir(exist_ok=True)
    common = [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=1"]
    for name, extra in named:
        (directory / f"{name}.toml").write_text(to_toml(load_config(None, [*common, *extra])))


def frontier_args(configs, out, report, seeds: int = 2) -> list[str]:
    return ["frontier", "idx", "--configs", str(configs), "--seeds", str(seeds), "--timing-repeats", "1",
            "--out", str(out), "--report", str(report)]  # fmt: skip


def test_verdicts_need_two_standard_errors_against_every_dense_net_as_fast():
    dense_fast = ConfigSummary("dense-fast", False, 5, (3.0, 0.1), 5.0, 1.0)
    dense_slow = ConfigSummary("dense-slow", False, 5, (2.0, 0.1), 20.0, 1.0)
    clear = ConfigSummary("clear", True, 5, (2.8, 0.1), 6.0, 1.0)  # 0.2 better, SE 0.063: +3.2 SE
    close = ConfigSummary("close", True, 5, (2.95, 0.1), 6.0, 1.0)  # 0.05 better: +0.8 SE
    slow = ConfigSummary("slow", True, 5, (2.5, 0.1), 25.0, 1.0)  # dense-slow is faster and better
    lines = dict(v.split(": ", 1) for v in verdicts([dense_fast, dense_slow, clear, close, slow]))
    assert lines["clear"].startswith("ON the front") and "+3.2 standard errors" in lines["clear"]
    assert lines["close"].startswith("NOT on the front") and "+0.8 standard errors" in lines["close"]
    assert lines["slow"].startswith("NOT on the front") and "dense-slow" in lines["slow"]


def test_frontier_end_to_end(tmp_path, idx_dir, capsys):
    configs, report = tmp_path / "configs", tmp_path / "report"
    write_configs(configs, idx_dir, TWO)
    assert main(frontier_args(configs, tmp_path / "runs", report)) == 0
    with open(report / "idx.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["gated"], r["seed"]) for r in rows] == [
        ("dense", "False", "100"),
        ("dense", "False", "101"),
        ("topk", "True", "100"),
        ("topk", "True", "101"),
    ]
    assert all(float(r["b1_latency_us"]) > 0 and float(r["b50_pass_ms"]) > 0 for r in rows)
    markdown = (report / "idx.md").read_text()
    assert "topk: " in markdown and "standard errors" in markdown and "Command:" in markdown
    assert "cores busy while timing" in markdown and "no training running" not in markdown
    assert (report / "idx.png").stat().st_size > 10_000
    # make run's comparison of one gated and one dense run
    gated, dense = (tmp_path / "runs" / name / "seed-100" for name in ("topk", "dense"))
    capsys.readouterr()
    assert main(["versus", str(gated), str(dense), "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "gated: " in printed and "dense: " in printed and "verdict: the " in printed
    assert main(["versus", str(dense), str(gated), "--repeats", "1"]) == 2  # the order matters


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_frontier_on_another_machine_keeps_the_recorded_errors_and_times_one_seed_again(tmp_path, idx_dir):
    """The runs are gone (a new machine), the report's CSV is kept (committed): each config trains its
    first seed again, to be timed here; the other seeds' errors come from the record, their latencies
    from nowhere. A config changed since is trained anew."""
    configs, report = tmp_path / "configs", tmp_path / "report"
    write_configs(configs, idx_dir, TWO)

    def frontier(out):
        assert main(frontier_args(configs, tmp_path / out, report)) == 0
        return _rows(report / "idx.csv")

    first = frontier("machine-a")
    rows = {(r["config"], r["seed"]): r for r in first}
    rows["dense", "101"]["test_error"] = "0.5"  # a value no training gives: it can only come from the record
    with open(report / "idx.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(first[0]))
        writer.writeheader()
        writer.writerows(rows.values())
    write_configs(configs, idx_dir, [("topk", ["model.router=topk", "model.k=2"])])

    second = {(r["config"], r["seed"]): r for r in frontier("machine-b")}
    trained = sorted(p.parent.name + "/" + p.name for p in (tmp_path / "machine-b").glob("*/seed-*"))
    assert trained == ["dense/seed-100", "topk/seed-100", "topk/seed-101"]
    assert second["dense", "101"]["test_error"] == "0.5" and second["dense", "101"]["b1_latency_us"] == ""
    assert float(second["dense", "100"]["b1_latency_us"]) > 0
    assert second["topk", "101"]["config_sha"] != rows["topk", "101"]["config_sha"]
    dense_100 = 100 * float(second["dense", "100"]["test_error"])
    line = next(x for x in (report / "idx.md").read_text().splitlines() if x.startswith("| dense |"))
    assert f"| {(dense_100 + 50) / 2:.2f} ± " in line  # the mean of the run trained here and the record's
    assert "1 run's error comes from the record" in (report / "idx.md").read_text()


def test_retime_times_every_run_again_in_one_step(tmp_path, idx_dir, capsys):
    """Seeds added later are timed alone, the others keep their times; --retime times them all in the
    one timing step the report describes. The report says how the runs were timed: a run timed by an
    older condnet (once, no count of rounds) is not passed off as timed in three rounds."""
    configs, out, report = tmp_path / "configs", tmp_path / "runs", tmp_path / "report"
    write_configs(configs, idx_dir, [("dense", ["model.kind=nn"])])
    assert main(frontier_args(configs, out, report, seeds=1)) == 0
    timing_file = out / "dense" / "seed-100" / "timing.json"
    older = json.loads(timing_file.read_text())
    del older["rounds"]  # as an older condnet wrote it
    timing_file.write_text(json.dumps(older))
    capsys.readouterr()
    assert main(frontier_args(configs, out, report, seeds=2)) == 0
    assert "timing 1 runs on one core" in capsys.readouterr().out
    said = (report / "idx.md").read_text()
    assert "each run in 1-3 rounds" in said and "--retime times every run in 3" in said
    assert main([*frontier_args(configs, out, report, seeds=2), "--retime"]) == 0
    assert "timing 2 runs on one core" in capsys.readouterr().out
    said = (report / "idx.md").read_text()
    assert "each run in 3 rounds in turn with the others" in said and "--retime" not in said


def test_a_frontier_stopped_while_timing_has_recorded_its_trained_runs(tmp_path, idx_dir, monkeypatch):
    from condnet.reproduce import frontier as module

    write_configs(tmp_path / "configs", idx_dir, [("dense", [])])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "time_all", stopped)
    args = frontier_args(tmp_path / "configs", tmp_path / "runs", tmp_path / "report")
    assert main(args) == 130  # interrupted
    rows = _rows(tmp_path / "report" / "idx.csv")
    assert [(r["seed"], r["b1_latency_us"]) for r in rows] == [("100", ""), ("101", "")]
    assert all(0 <= float(r["test_error"]) <= 1 for r in rows)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("config,gated,seed,test_error,valid_error,config_sha\nd,False,100,zero,0.1,a\n", "idx.csv line 2"),
        ("config,seed,test_error,config_sha\ndense,100,0.1,abc\n", "no gated, valid_error column"),
    ],
)
def test_a_corrupt_record_is_a_one_line_error_before_any_training(tmp_path, idx_dir, capsys, text, said):
    write_configs(tmp_path / "configs", idx_dir, [("dense", [])])
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "idx.csv").write_text(text)
    assert main(frontier_args(tmp_path / "configs", tmp_path / "runs", tmp_path / "report")) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_other_work_while_timing_is_the_busy_time_not_ours(monkeypatch):
    """The cores others kept busy = (machine busy seconds - our CPU seconds) / wall seconds, by hand; the
    1-minute load average would still count a training that ended just before the timing (reports of
    short timing steps said "noisy" on an idle machine)."""
    from condnet.engine import timing

    def measured(*snapshots, timed=3):
        readings = iter(snapshots)
        monkeypatch.setattr(timing, "_busy_and_own", lambda: next(readings))
        with timing.OtherWork() as other:
            pass
        return other.describe(timed)

    assert "kept 1.00 of" in measured((100.0, 10.0, 0.0), (103.0, 11.0, 2.0))  # (3 - 1) / 2
    assert "other work was running" in measured((100.0, 10.0, 0.0), (103.0, 11.0, 2.0))
    assert "kept 0.10 of" in measured((100.0, 10.0, 0.0), (101.2, 11.0, 2.0))  # (1.2 - 1) / 2
    assert "idle besides the timing" in measured((100.0, 10.0, 0.0), (101.2, 11.0, 2.0))
    # a fast machine times small runs in under a second: that is still a measurement (CI said "nothing
    # timed again" when the wall-clock time, not the count of runs timed, decided it)
    assert "kept 0.00 of" in measured((100.0, 10.0, 0.0), (100.1, 10.1, 0.2))
    assert "nothing timed again" in measured((100.0, 10.0, 0.0), (100.1, 10.1, 0.2), timed=0)


def test_the_load_when_timed_is_measured_not_assumed(monkeypatch):
    """The frontier's and reproduce's reports said "no training running" whatever ran: now they give the
    1-minute load average, and say when other work was running."""
    import os

    from condnet.engine import timing

    monkeypatch.setattr(os, "getloadavg", lambda: (2.9, 2.0, 1.0))
    assert "2.90" in timing.load_when_timed() and "other work was running" in timing.load_when_timed()
    monkeypatch.setattr(os, "getloadavg", lambda: (1.02, 1.0, 1.0))
    assert "idle besides the timing" in timing.load_when_timed()


def test_runs_are_timed_in_turn_for_several_rounds_and_credited_with_medians(tmp_path, monkeypatch):
    """A slow spell of the machine while one run is timed must not move that run (on this VM one
    frontier config read 31.8 us in one timing step and 37.2 us in the next): every run is timed in
    each of several rounds, the configs' seeds interleaved, and its timing.json holds the medians."""
    from condnet.reproduce import runner
    from condnet.reproduce.tables import Row

    jobs = [runner.Job(Row(name, f"{name}.toml"), seed, tmp_path / name / f"seed-{seed}", None)
            for name in ("a", "b") for seed in (100, 101)]  # fmt: skip
    for job in jobs:
        job.run_dir.mkdir(parents=True)
    calls = []

    def time_run(run_dir, repeats):
        calls.append(run_dir)
        spell = 3.0 if len(calls) == 2 else 1.0  # the machine slows down during the second timing
        ms = 0.010 * spell
        return {"batch1_dense_ms": ms, "batch1_engine_ms": 2 * ms, "batch1_ort_ms": None,
                "test_pass_dense_s": ms, "test_pass_engine_s": ms, "machine": "here"}  # fmt: skip

    monkeypatch.setattr(runner, "time_run", time_run)
    monkeypatch.setattr(runner, "is_finished", lambda run_dir: True)
    assert runner.time_all(jobs, repeats=1, log=lambda line: None) == 4
    assert calls[:4] == [jobs[0].run_dir, jobs[2].run_dir, jobs[1].run_dir, jobs[3].run_dir]  # seeds apart
    assert all(calls.count(job.run_dir) >= 3 for job in jobs)
    for job in jobs:
        timing = json.loads((job.run_dir / "timing.json").read_text())
        assert (timing["batch1_dense_ms"], timing["batch1_engine_ms"]) == (0.010, 0.020)
        assert timing["batch1_ort_ms"] is None and timing["machine"] == "here"
        assert timing["rounds"] == len(calls) // 4


def test_a_timing_step_stopped_keeps_what_it_measured(tmp_path, monkeypatch):
    """Ctrl-C in the third round of a long timing step must not throw away the rounds done: every run
    timed at least once keeps its medians so far, with their count (the report then says so)."""
    from condnet.reproduce import runner
    from condnet.reproduce.tables import Row

    jobs = [runner.Job(Row(name, f"{name}.toml"), 100, tmp_path / name, None) for name in ("a", "b")]
    for job in jobs:
        job.run_dir.mkdir()
    calls = []

    def time_run(run_dir, repeats):
        calls.append(run_dir)
        if len(calls) == 5:  # the first timing of round 3 (rounds go a, b; b, a; a, b)
            raise KeyboardInterrupt
        return {"batch1_dense_ms": 0.01 * len(calls), "batch1_engine_ms": 0.01, "test_pass_dense_s": 0.1}

    monkeypatch.setattr(runner, "time_run", time_run)
    monkeypatch.setattr(runner, "is_finished", lambda run_dir: True)
    with pytest.raises(KeyboardInterrupt):
        runner.time_all(jobs, repeats=1, log=lambda line: None)
    kept = {job.run_dir.name: json.loads((job.run_dir / "timing.json").read_text()) for job in jobs}
    assert kept["a"]["rounds"] == 2 and kept["a"]["batch1_dense_ms"] == pytest.approx((0.01 + 0.04) / 2)
    assert kept["b"]["rounds"] == 2 and kept["b"]["batch1_dense_ms"] == pytest.approx((0.02 + 0.03) / 2)
    assert "in 2 rounds" in runner.how_timed(jobs) and "--retime" in runner.how_timed(jobs)


def test_a_rerun_finishes_the_rounds_a_stopped_timing_step_left(tmp_path, monkeypatch):
    """After Ctrl-C in round 3, a plain rerun times each run only in the round it lacks and credits the
    medians of all three (it used to keep the two-round medians until --retime, and --retime would time
    every round again); rounds timed on another machine are not mixed with this one's: timed again."""
    from condnet.reproduce import runner
    from condnet.reproduce.tables import Row

    jobs = [runner.Job(Row(name, f"{name}.toml"), 100, tmp_path / name, None) for name in ("a", "b", "c")]
    for job in jobs:
        job.run_dir.mkdir()
    calls, stop_at = [], [7]  # the first timing of round 3 (rounds go a, b, c; c, b, a; a, b, c)
    values = {"a": [0.01, 0.05, 0.03], "b": [0.02, 0.04, 0.09], "c": [0.03, 0.03, 0.06]}
    timed = {"a": 0, "b": 0, "c": 0}

    def time_run(run_dir, repeats):
        calls.append(run_dir.name)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        timed[run_dir.name] += 1
        ms = values[run_dir.name][timed[run_dir.name] - 1]
        return {"batch1_dense_ms": ms, "batch1_engine_ms": ms, "test_pass_dense_s": 0.1, "machine": "here"}

    monkeypatch.setattr(runner, "time_run", time_run)
    monkeypatch.setattr(runner, "machine", lambda: "here")
    monkeypatch.setattr(runner, "is_finished", lambda run_dir: True)
    with pytest.raises(KeyboardInterrupt):
        runner.time_all(jobs, repeats=1, log=lambda line: None)
    first = json.loads((jobs[2].run_dir / "timing.json").read_text())
    first["machine"] = "another CPU"  # c's two rounds were timed on another machine
    (jobs[2].run_dir / "timing.json").write_text(json.dumps(first))
    calls.clear()
    stop_at[0] = 0
    values["c"], timed["c"] = [0.07, 0.08, 0.06], 0  # c starts over on this machine

    assert runner.time_all(jobs, repeats=1, log=lambda line: None) == 3
    assert sorted(calls) == ["a", "b", "c", "c", "c"]
    kept = {job.run_dir.name: json.loads((job.run_dir / "timing.json").read_text()) for job in jobs}
    assert all(timing["rounds"] == 3 for timing in kept.values())
    assert kept["a"]["batch1_dense_ms"] == pytest.approx(0.03)  # the median of 0.01, 0.05 and the new 0.03
    assert kept["b"]["batch1_dense_ms"] == pytest.approx(0.04)
    assert kept["c"]["batch1_dense_ms"] == pytest.approx(0.07)  # this machine's three rounds only
    assert "fewer than" not in runner.how_timed(jobs)
    calls.clear()
    assert runner.time_all(jobs, repeats=1, log=lambda line: None) == 0 and calls == []  # all done
