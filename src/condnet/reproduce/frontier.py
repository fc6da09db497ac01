"""`condnet frontier DATASET --configs DIR`: the error-latency front of gated against dense nets.

Every config in DIR (chosen beforehand on validation, for instance from `condnet search`'s Pareto
set) is trained on fresh seeds (from FIRST_SEED on: the search trained seed 0) with the reproduce
runner (resumable, W workers), then timed alone on one core. It writes DATASET.csv (one line per run),
DATASET.md (mean ± std per config and the verdicts) and DATASET.png into the report directory.

DATASET.csv is also the frontier's record, rewritten as each run finishes: a run it records (same
config, same seed) whose directory is gone, as on another machine, is not trained again; its error
stands, and each config's latency is timed on the runs of this machine, for which a config with none
trains its first seed again. Latencies are never carried from another command's record.

Latency of a dense net: the fastest of PyTorch, the engine and ONNX Runtime (what a user would deploy);
of a gated net: the engine. The test pass at batch 50: the faster of PyTorch and the engine for dense
nets, the engine for gated ones. Test errors are in sample mode (the paper's inference).

Verdict, per gated config: ON the front when its mean test error is below that of every dense config
whose mean batch-1 latency is at most its own, by at least two standard errors of the difference
(sqrt(s_g^2 / n_g + s_d^2 / n_d)).
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from condnet import logs
from condnet.bench.deployed import deployed_latency, timing_latency
from condnet.config import Config, to_toml
from condnet.errors import CondnetError
from condnet.report.plots import plain_log_labels, plt, spread_labels
from condnet.report.summary import mean_std
from condnet.reproduce.runner import (
    Job,
    check_same_config,
    how_timed,
    is_finished,
    plan,
    threads_per_worker,
    time_all,
    train_all,
)
from condnet.reproduce.tables import Row, Table
from condnet.run_dir import RunDir, save_figure, write_atomic, write_csv

FIRST_SEED = 100
CSV_FIELDS = ["config", "gated", "seed", "test_error", "valid_error", "b1_latency_us", "b50_pass_ms",
              "activation_rate", "latency_from", "run_dir", "config_sha"]  # fmt: skip
UNTIMED = {"b1_latency_us": None, "b50_pass_ms": None, "latency_from": None}  # a run not timed (yet)


@dataclass
class ConfigSummary:
    name: str
    gated: bool
    n: int
    error: tuple[float, float]  # percent: mean, sample std
    latency_us: float  # mean batch-1 latency (of the runs timed here)
    pass_ms: float  # mean test pass at batch 50 (of the runs timed here)
    timed: int = 0  # runs timed here (the others' errors are from the record)


def frontier_table(dataset: str, config_dir: Path) -> Table:
    configs = sorted(config_dir.glob("*.toml"))
    if not configs:
        raise CondnetError(f"--configs {config_dir} holds no .toml config")
    return Table(f"frontier-{dataset}", dataset, tuple(Row(p.stem, p.name) for p in configs), "frontier")


def run_latency(timing: dict, gated: bool) -> tuple[float, str, float]:
    """(batch-1 ms, where it was measured, test pass at batch 50 s) from a run's timing.json, by the one
    rule (condnet.bench.deployed; the test pass is timed in PyTorch and the engine only)."""
    latency, source = timing_latency(timing, gated)
    passes = {"pytorch": timing["test_pass_dense_s"], "engine": timing["test_pass_engine_s"]}
    return latency, source, deployed_latency(passes, gated)[0]


def config_sha(cfg: Config) -> str:
    return hashlib.sha256(to_toml(cfg).encode()).hexdigest()[:12]


def run_record(job: Job) -> dict | None:
    """One CSV line for a finished run (its latencies None until it is timed), or None."""
    run = RunDir(job.run_dir)
    if not run.is_finished():
        return None
    metrics = run.metrics()
    gated = job.cfg.model.is_gated
    record = {
        "config": job.row.name,
        "gated": gated,
        "seed": job.seed,
        "test_error": metrics["test_error"]["sample"],
        "valid_error": run.best_valid_error(),
        "activation_rate": "/".join(f"{r:.4f}" for r in metrics["activation_rate"]),
        "run_dir": str(job.run_dir),
        "config_sha": config_sha(job.cfg),
        **UNTIMED,
    }
    timing = run.timing()
    if timing is not None:
        latency, source, test_pass = run_latency(timing, gated)
        record.update(b1_latency_us=1e3 * latency, b50_pass_ms=1e3 * test_pass, latency_from=source)
    return record


def recorded_runs(path: Path, jobs: list[Job], log=logs.info) -> dict[tuple[str, int], dict]:
    """The runs an earlier command recorded in `path` (this frontier's CSV) with the config and seed of one
    of `jobs`, by (config, seed); their latencies dropped (timed by another command, maybe elsewhere)."""
    if not path.is_file():
        return {}
    wanted = {(job.row.name, job.seed): config_sha(job.cfg) for job in jobs}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or [])
        if "config_sha" not in columns:
            log(f"{path} holds no config_sha column (an older report): none of its runs is reused")
            return {}
        if missing := {"config", "seed", "gated", "test_error", "valid_error"} - columns:
            raise CondnetError(f"{path} has no {', '.join(sorted(missing))} column: move it away to train "
                               "every run here")  # fmt: skip
        found = {}
        for line, row in enumerate(reader, 2):
            try:
                key = (row["config"], int(row["seed"]))
                errors = {"test_error": float(row["test_error"]), "valid_error": float(row["valid_error"])}
                if not all(0 <= e <= 1 for e in errors.values()):
                    raise ValueError(f"an error rate outside [0, 1]: {errors}")
            except (KeyError, TypeError, ValueError) as exc:
                raise CondnetError(
                    f"{path} line {line} is not a run's record ({type(exc).__name__}: {exc}): fix the line, "
                    "or move the file away to train every run here"
                ) from None
            if wanted.get(key) == row["config_sha"]:
                found[key] = {**row, **errors, "gated": row["gated"] == "True", "seed": key[1], **UNTIMED}
    return found


def records(jobs: list[Job], recorded: dict) -> list[dict]:
    """Every run of the plan this frontier has: its run here if finished, else the record's."""
    found = ((run_record(job) or recorded.get((job.row.name, job.seed))) for job in jobs)
    return [r for r in found if r is not None]


def runs_here(jobs: list[Job], recorded: dict) -> list[Job]:
    """The runs this machine must hold: those finished here, those neither finished here nor recorded,
    and each config's first seed when it has no other (a config is timed on its runs here)."""
    here = [job for job in jobs if is_finished(job.run_dir) or (job.row.name, job.seed) not in recorded]
    held = {job.row.name for job in here}
    firsts = {job.row.name: job for job in reversed(jobs)}  # each config's lowest seed
    return here + [job for name, job in firsts.items() if name not in held]


def summarize(records: list[dict]) -> list[ConfigSummary]:
    """Per config with a run timed here: its errors over every run, its latencies over the timed ones."""
    summaries = []
    for name in dict.fromkeys(r["config"] for r in records):
        runs = [r for r in records if r["config"] == name]
        timed = [r for r in runs if r["b1_latency_us"] is not None]
        if not timed:
            continue
        summaries.append(ConfigSummary(
            name, runs[0]["gated"], len(runs), mean_std([100 * r["test_error"] for r in runs]),
            mean_std([r["b1_latency_us"] for r in timed])[0], mean_std([r["b50_pass_ms"] for r in timed])[0],
            len(timed),
        ))  # fmt: skip
    return summaries


def margin(gated: ConfigSummary, dense: ConfigSummary) -> float:
    """By how many standard errors of the difference the gated mean error is below the dense one."""
    se = math.sqrt(gated.error[1] ** 2 / gated.n + dense.error[1] ** 2 / dense.n)
    gap = dense.error[0] - gated.error[0]
    return gap / se if se > 0 else (math.inf if gap > 0 else -math.inf)


def verdicts(summaries: list[ConfigSummary]) -> list[str]:
    dense = [s for s in summaries if not s.gated]
    lines = []
    for s in (s for s in summaries if s.gated):
        rivals = [d for d in dense if d.latency_us <= s.latency_us]
        if not rivals:
            lines.append(f"{s.name}: no dense config is as fast ({s.latency_us:.1f} us): add narrower dense "
                         "nets before calling it on the front")  # fmt: skip
            continue
        worst = min(rivals, key=lambda d, s=s: margin(s, d))
        on = margin(s, worst) >= 2
        lines.append(
            f"{s.name}: {'ON' if on else 'NOT on'} the front: {s.error[0]:.2f} ± {s.error[1]:.2f} % "
            f"(n={s.n}) at {s.latency_us:.1f} us; the hardest dense rival at most as slow, {worst.name}, has "
            f"{worst.error[0]:.2f} ± {worst.error[1]:.2f} % (n={worst.n}) at {worst.latency_us:.1f} us: "
            f"{worst.error[0] - s.error[0]:+.2f} points, {margin(s, worst):+.1f} standard errors (2 needed)"
        )
    return lines


def figure(records: list[dict], summaries: list[ConfigSummary], title: str, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    panels = (("b1_latency_us", "latency_us", "batch-1 latency, one core (us)"),
              ("b50_pass_ms", "pass_ms", "one test pass at batch 50 (ms)"))  # fmt: skip
    labels = []  # per panel, the configs' name labels
    for ax, (key, mean_of, label) in zip(axes, panels, strict=True):
        names = []
        for s in summaries:
            color = "tab:red" if s.gated else "tab:blue"
            runs = [r for r in records if r["config"] == s.name and r[key] is not None]
            ax.scatter(
                [r[key] for r in runs], [100 * r["test_error"] for r in runs], s=8, color=color, alpha=0.3
            )
            ax.errorbar(getattr(s, mean_of), s.error[0], yerr=s.error[1], fmt="o" if s.gated else "s",
                        color=color, capsize=3)  # fmt: skip
            names.append(ax.annotate(s.name, (getattr(s, mean_of), s.error[0]), textcoords="offset points",
                                     xytext=(5, 3), fontsize=7))  # fmt: skip
        ax.set(xscale="log", xlabel=label, ylabel="test error (%)", title=title)
        plain_log_labels(ax.xaxis)
        ax.tick_params(which="minor", labelsize=7)
        ax.grid(alpha=0.3, which="both")
        labels.append(names)
    n = max((s.n for s in summaries), default=0)
    handles = [
        axes[0].errorbar([], [], yerr=[], fmt="o", color="tab:red", capsize=3, label="gated (engine)"),
        axes[0].errorbar(
            [],
            [],
            yerr=[],
            fmt="s",
            color="tab:blue",
            capsize=3,
            label="dense (fastest of PyTorch, engine, ONNX Runtime)",
        ),  # fmt: skip
        axes[0].scatter([], [], s=8, color="gray", alpha=0.4, label="one seed"),
    ]
    # below the panels, so that it never covers a point; the bars' meaning said once
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
        title=f"marker: mean over seeds (up to {n}); bar: ± one standard deviation",
        title_fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    for ax, names in zip(axes, labels, strict=True):
        spread_labels(ax, names)
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def run_frontier(
    dataset: str,
    config_dir: Path,
    seeds: int,
    out: Path,
    report_dir: Path,
    workers: int = 1,
    threads: int | None = None,
    timing_repeats: int = 15,
    command: str = "",
    log=logs.info,
    cluster: str | None = None,
    retime: bool = False,
) -> list[str]:
    """Train, time and report; returns the verdicts. retime: time every finished run here again (else
    only those not timed yet: seeds added in a later session would be timed apart from the others)."""

    from condnet.engine.timing import OtherWork, machine

    table = frontier_table(dataset, config_dir)
    jobs = plan(table, seeds, out, [], config_dir, first_seed=FIRST_SEED)
    wrong = sorted({job.row.name for job in jobs if job.cfg.data.name != dataset})
    if wrong:
        raise CondnetError(
            f"{', '.join(wrong)}: data.name is not {dataset}; frontier {dataset} needs its configs"
        )
    threads = threads_per_worker(workers, threads)
    report_dir.mkdir(parents=True, exist_ok=True)
    record_path = report_dir / f"{dataset}.csv"
    with RunDir(out).lock():
        check_same_config(jobs)  # a run here is only reused for its own config
        recorded = recorded_runs(record_path, jobs, log)
        here = runs_here(jobs, recorded)
        if len(here) < len(jobs):
            log(f"{len(jobs) - len(here)} runs recorded in {record_path} are not here: their errors stand")

        def record(*_) -> None:  # after each run: the record survives this machine
            if found := records(jobs, recorded):  # an older report is only replaced by runs
                write_csv(found, record_path, CSV_FIELDS)

        record()
        failures = train_all(here, workers, threads, log, cluster, on_done=record)
        with OtherWork() as other_work:
            timed = time_all(jobs, timing_repeats, retime, log=log)
        load = other_work.describe(timed)
    found_records = records(jobs, recorded)
    if not found_records:
        raise CondnetError("no run finished; see the errors above")
    write_csv(found_records, record_path, CSV_FIELDS)
    summaries = summarize(found_records)
    untimed = sorted({r["config"] for r in found_records} - {s.name for s in summaries})
    figure(found_records, summaries, f"{dataset}: gated against dense", report_dir / f"{dataset}.png")
    found = verdicts(summaries)
    from_record = sum(r["b1_latency_us"] is None for r in found_records)
    lines = [
        f"# Error-latency front on {dataset}: {seeds} fresh seeds per config (from seed {FIRST_SEED})",
        "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    timed_how = how_timed(jobs)
    lines += [f"Timed on: {machine()}, one core, after this command's trainings, {timed_how}; {load}.", ""]
    if from_record:
        runs = "1 run's error comes" if from_record == 1 else f"{from_record} runs' errors come"
        lines += [f"{runs} from the record ({record_path.name}: trained by an earlier command, not on this "
                  "machine); latencies are those of the runs timed here (column timed).", ""]  # fmt: skip
    header = "| config | gated | n | timed | test error % (mean ± std) | batch-1 us | batch-50 test pass ms |"
    lines += [header, "|---|---|---|---|---|---|---|"]
    lines += [f"| {s.name} | {s.gated} | {s.n} | {s.timed} | {s.error[0]:.2f} ± {s.error[1]:.2f} | "
              f"{s.latency_us:.1f} | {s.pass_ms:.1f} |"
              for s in sorted(summaries, key=lambda s: s.latency_us)]  # fmt: skip
    lines += [
        "",
        "Verdicts (on the front: below every dense config at most as slow, by 2 standard errors):",
        "",
    ]
    lines += [f"- {v}" for v in found] or ["- no gated config"]
    if untimed:
        lines += ["", "Not on the front (no run of theirs timed here):", ""] + [f"- {n}" for n in untimed]
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    write_atomic(report_dir / f"{dataset}.md", "\n".join(lines) + "\n")
    return found
