"""A table's results: a CSV with every run, a markdown table with one line per row, and its figure."""

from __future__ import annotations

from dataclasses import dataclass

from condnet.bench.deployed import timing_latency
from condnet.report.summary import mean_std
from condnet.reproduce.runner import Job
from condnet.reproduce.tables import Table
from condnet.run_dir import FAILED, RunDir

CSV_FIELDS = [
    "row", "kind", "seed", "status", "test_error_sample", "test_error_threshold", "activation_rate",
    "macs_fraction", "epochs", "train_seconds", "gated", "batch1_dense_ms", "batch1_engine_ms",
    "batch1_ort_ms",
    "test_pass_dense_s", "test_pass_engine_s", "run_dir",
]  # fmt: skip


def run_record(job: Job) -> dict:
    """One CSV line: the run's metrics and timing, or its status when it has none."""
    model = job.cfg.model
    record = {"row": job.row.name, "kind": model.kind, "gated": model.is_gated, "seed": job.seed,
              "run_dir": str(job.run_dir)}  # fmt: skip
    run = RunDir(job.run_dir)
    if not run.is_finished():
        failed = run.partial / FAILED
        record["status"] = "failed: " + failed.read_text().strip() if failed.is_file() else "not run"
        return record
    metrics, timing = run.metrics(), run.timing() or {}
    record.update(
        status="finished" if timing else "finished, not timed",
        test_error_sample=metrics["test_error"]["sample"],
        test_error_threshold=metrics["test_error"]["threshold"],
        activation_rate="/".join(f"{r:.4f}" for r in metrics["activation_rate"]),
        macs_fraction=metrics["macs"] / metrics["dense_macs"],
        epochs=metrics["epochs"],
        train_seconds=metrics["train_seconds"],
        **{k: timing.get(k) for k in CSV_FIELDS if k in timing},
    )
    return record


def credited_latency(record: dict) -> float | None:
    """A run record's batch-1 ms by the one rule (condnet.bench.deployed), None when not timed."""
    if record.get("batch1_engine_ms") is None:
        return None
    return timing_latency(record, is_gated(record))[0]


def is_gated(record: dict) -> bool:
    """A run record's `gated`: a bool, or its text in a CSV read back."""
    return str(record.get("gated")) == "True"


@dataclass
class RowSummary:
    name: str
    kind: str  # the model's kind: the figures' colour
    gated: bool
    sweep: bool
    n: int
    error: tuple[float, float] | None  # percent, mean and std over seeds (sample mode)
    threshold: tuple[float, float] | None
    rates: list[tuple[float, float]]  # per hidden layer
    pass_dense: float | None  # mean seconds of one test pass at batch 50
    pass_engine: float | None
    latency_dense: float | None  # mean batch-1 ms
    latency_engine: float | None
    latency_deployed: float | None  # mean batch-1 ms credited by the one rule (condnet.bench.deployed)
    paper_error: float | None
    paper_speedup: float | None

    @property
    def latency(self) -> float | None:
        return self.latency_deployed


def summarize(table: Table, records: list[dict]) -> list[RowSummary]:
    summaries = []
    for row in table.rows:
        mine = [r for r in records if r["row"] == row.name]
        done = [r for r in mine if r["status"].startswith("finished")]
        timed = [r for r in done if r.get("batch1_engine_ms") is not None]

        def spread(key, runs, scale=1.0):
            values = [scale * r[key] for r in runs if r.get(key) is not None]
            return mean_std(values) if values else None

        def mean(key, runs=timed):
            value = spread(key, runs)
            return None if value is None else value[0]

        n_layers = len(done[0]["activation_rate"].split("/")) if done else 0
        rates = [mean_std([float(r["activation_rate"].split("/")[i]) for r in done]) for i in range(n_layers)]
        summaries.append(
            RowSummary(
                row.name, done[0]["kind"] if done else "?", any(map(is_gated, mine)), row.sweep, len(done),
                spread("test_error_sample", done, 100), spread("test_error_threshold", done, 100), rates,
                mean("test_pass_dense_s"), mean("test_pass_engine_s"), mean("batch1_dense_ms"),
                mean("batch1_engine_ms"), _mean([credited_latency(r) for r in timed]), row.paper_error,
                row.paper_speedup,
            )
        )  # fmt: skip
    return summaries


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return mean_std(values)[0] if values else None


def _pm(value, digits=2) -> str:
    return "—" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def _num(value, fmt="{:.3f}") -> str:
    return "—" if value is None else fmt.format(value)


def markdown_table(summaries: list[RowSummary]) -> str:
    lines = [
        "| row | paper's test error % | ours, test error % (sample), mean ± sample std (n) | threshold % | "
        "activation rate | test pass at batch 50, dense s | engine s | speedup | paper's speedup | "
        "batch-1 dense ms | engine ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        rate = "1 (dense)" if not s.gated else "/".join(f"{m:.3f} ± {d:.3f}" for m, d in s.rates) or "—"
        speedup = None if s.pass_engine is None else s.pass_dense / s.pass_engine
        threshold = "n/a" if s.n and s.threshold is None else _pm(s.threshold)  # bdNN has no threshold mode
        lines.append(
            f"| {s.name}{' (sweep)' if s.sweep else ''} | {_num(s.paper_error, '{:.1f}')} | "
            f"{_pm(s.error)} ({s.n}) | {threshold} | {rate} | "
            f"{_num(s.pass_dense)} | {_num(s.pass_engine)} | {_num(speedup, '{:.2f}x')} | "
            f"{_num(s.paper_speedup, '{:.1f}x')} | {_num(s.latency_dense, '{:.4f}')} | "
            f"{_num(s.latency_engine, '{:.4f}')} |"
        )
    return "\n".join(lines) + "\n"


def pareto_verdicts(summaries: list[RowSummary]) -> list[str]:
    """For each gated row: is it on the error-latency front against the dense nets, and by how much."""
    dense = [s for s in summaries if not s.gated and s.latency is not None and s.error is not None]
    verdicts = []
    for s in summaries:
        if not s.gated or s.latency is None or s.error is None:
            continue
        as_fast = [d for d in dense if d.latency <= s.latency]
        if not as_fast:
            fastest = min(dense, key=lambda d: d.latency, default=None)
            extra = f" (the fastest, {fastest.name}, takes {fastest.latency:.4f} ms)" if fastest else ""
            verdicts.append(
                f"{s.name}: ON the front, but only because no dense net of this table is as fast as its "
                f"{s.latency:.4f} ms{extra}: a narrower dense net would decide it."
            )
            continue
        best = min(as_fast, key=lambda d: d.error[0])
        gap = s.error[0] - best.error[0]
        where = "ON the front" if gap < 0 else "NOT on the front"
        verdicts.append(
            f"{s.name}: {where}: {s.error[0]:.2f} % at {s.latency:.4f} ms; the best dense net at most as "
            f"slow, {best.name}, has {best.error[0]:.2f} % at {best.latency:.4f} ms "
            f"({'better' if gap < 0 else 'misses'} by {abs(gap):.2f} points)."
        )
    return verdicts
