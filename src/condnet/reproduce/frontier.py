"""`condnet frontier DATASET --configs DIR`: the error-latency front of gated against dense nets.

Every config in DIR (chosen beforehand on validation, for instance from `condnet search`'s Pareto
set) is trained on fresh seeds (from FIRST_SEED on: the search trained seed 0) with the reproduce
runner (resumable, W workers), then timed alone on one core. It writes DATASET.csv (one line per run),
DATASET.md (mean ± std per config and the verdicts) and DATASET.png into the report directory.

Latency of a dense net: the fastest of PyTorch, the engine and ONNX Runtime (what a user would deploy);
of a gated net: the engine. The test pass at batch 50: the faster of PyTorch and the engine for dense
nets, the engine for gated ones. Test errors are in sample mode (the paper's inference).

Verdict, per gated config: ON the front when its mean test error is below that of every dense config
whose mean batch-1 latency is at most its own, by at least two standard errors of the difference
(sqrt(s_g^2 / n_g + s_d^2 / n_d)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from condnet import logs
from condnet.bench.deployed import deployed_latency, timing_latency
from condnet.errors import CondnetError
from condnet.report.plots import plain_log_labels, plt, spread_labels
from condnet.report.summary import mean_std
from condnet.reproduce.runner import Job, plan, threads_per_worker, time_all, train_all
from condnet.reproduce.tables import Row, Table
from condnet.run_dir import RunDir, save_figure, write_atomic, write_csv

FIRST_SEED = 100
CSV_FIELDS = ["config", "gated", "seed", "test_error", "b1_latency_us", "b50_pass_ms", "activation_rate",
              "latency_from", "run_dir"]  # fmt: skip


@dataclass
class ConfigSummary:
    name: str
    gated: bool
    n: int
    error: tuple[float, float]  # percent: mean, sample std
    latency_us: float  # mean batch-1 latency
    pass_ms: float  # mean test pass at batch 50


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


def run_record(job: Job) -> dict | None:
    """One CSV line, or None for a run that is not finished and timed."""
    run = RunDir(job.run_dir)
    timing = run.timing() if run.is_finished() else None
    if timing is None:
        return None
    metrics = run.metrics()
    gated = job.cfg.model.is_gated
    latency, source, test_pass = run_latency(timing, gated)
    error = metrics["test_error"]["sample"]
    return {
        "config": job.row.name, "gated": gated, "seed": job.seed, "test_error": error,
        "b1_latency_us": 1e3 * latency, "b50_pass_ms": 1e3 * test_pass,
        "activation_rate": "/".join(f"{r:.4f}" for r in metrics["activation_rate"]),
        "latency_from": source, "run_dir": str(job.run_dir),
    }  # fmt: skip


def summarize(records: list[dict]) -> list[ConfigSummary]:
    summaries = []
    for name in dict.fromkeys(r["config"] for r in records):
        runs = [r for r in records if r["config"] == name]
        summaries.append(ConfigSummary(
            name, runs[0]["gated"], len(runs), mean_std([100 * r["test_error"] for r in runs]),
            mean_std([r["b1_latency_us"] for r in runs])[0], mean_std([r["b50_pass_ms"] for r in runs])[0],
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
            runs = [r for r in records if r["config"] == s.name]
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
) -> list[str]:
    """Train, time and report; returns the verdicts."""

    from condnet.engine.timing import OtherWork, machine

    table = frontier_table(dataset, config_dir)
    jobs = plan(table, seeds, out, [], config_dir, first_seed=FIRST_SEED)
    wrong = sorted({job.row.name for job in jobs if job.cfg.data.name != dataset})
    if wrong:
        raise CondnetError(
            f"{', '.join(wrong)}: data.name is not {dataset}; frontier {dataset} needs its configs"
        )
    threads = threads_per_worker(workers, threads)
    with RunDir(out).lock():
        failures = train_all(jobs, workers, threads, log, cluster)
        with OtherWork() as other_work:
            timed = time_all(jobs, timing_repeats, log=log)
        load = other_work.describe(timed)
    records = [r for r in (run_record(job) for job in jobs) if r is not None]
    if not records:
        raise CondnetError("no run finished; see the errors above")
    summaries = summarize(records)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_csv(records, report_dir / f"{dataset}.csv", CSV_FIELDS)
    figure(records, summaries, f"{dataset}: gated against dense", report_dir / f"{dataset}.png")
    found = verdicts(summaries)
    lines = [
        f"# Error-latency front on {dataset}: {seeds} fresh seeds per config (from seed {FIRST_SEED})",
        "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Timed on: {machine()}, one core, after this command's trainings; {load}.", "",
              "| config | gated | n | test error % (mean ± std) | batch-1 us | test pass at batch 50 ms |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {s.name} | {s.gated} | {s.n} | {s.error[0]:.2f} ± {s.error[1]:.2f} | {s.latency_us:.1f} | "
              f"{s.pass_ms:.1f} |" for s in sorted(summaries, key=lambda s: s.latency_us)]  # fmt: skip
    lines += [
        "",
        "Verdicts (on the front: below every dense config at most as slow, by 2 standard errors):",
        "",
    ]
    lines += [f"- {v}" for v in found] or ["- no gated config"]
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    write_atomic(report_dir / f"{dataset}.md", "\n".join(lines) + "\n")
    return found
