"""`condnet reproduce TABLE` and `condnet ablate NAME`: plan, train, time, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condnet import logs
from condnet.config import toml_string
from condnet.engine.timing import OtherWork, machine
from condnet.errors import CondnetError
from condnet.reproduce import figures
from condnet.reproduce.report import CSV_FIELDS, markdown_table, pareto_verdicts, run_record, summarize
from condnet.reproduce.runner import how_timed, plan, threads_per_worker, time_all, train_all
from condnet.reproduce.tables import CONFIG_DIR, Table
from condnet.run_dir import RunDir, write_atomic, write_csv


@dataclass
class Outputs:
    csv: Path
    markdown: Path
    figure: Path
    failures: list[str]


def report_title(table: Table, cfg) -> str:
    """The table's name, the data its architectures were trained on when not the paper's, and the
    lambda_s warm-up when the command line added it (the remedy of RESULTS 4, not the paper's recipe)."""
    data = cfg.data.name
    title = table.name + ("" if data == table.dataset else f" architectures trained on {data}")
    return title + (" (with the lambda_s warm-up)" if cfg.train.lambda_s_warmup > 0 else "")


def run_table(
    table: Table,
    seeds: int,
    out: Path,
    report_dir: Path | None = None,
    workers: int = 1,
    threads: int | None = None,
    overrides: list[str] = (),
    data_dir: str | None = None,
    timing_repeats: int = 15,
    retime: bool = False,
    config_dir: Path = CONFIG_DIR,
    command: str = "",
    log=logs.info,
    cluster: str | None = None,
) -> Outputs:
    """Every row for `seeds` seeds into OUT/<row>/seed-<n>, then the CSV, markdown and figure into
    REPORT_DIR (default OUT) as <table>.csv, <table>.md and <table>.png."""
    for name, value in (("--workers", workers), ("--threads", threads), ("--timing-repeats", timing_repeats)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise CondnetError(f"{name} must be a whole number of at least 1, got {value}")
    threads = threads_per_worker(workers, threads)
    overrides = [*overrides, *([f"data.dir={toml_string(data_dir)}"] if data_dir else [])]
    jobs = plan(table, seeds, out, overrides, config_dir)
    with RunDir(out).lock():  # one command per output directory
        failures = train_all(jobs, workers, threads, log, cluster)
        with OtherWork() as other_work:
            timed = time_all(jobs, timing_repeats, retime, log)

    report_dir = report_dir or out
    report_dir.mkdir(parents=True, exist_ok=True)
    records = [run_record(job) for job in jobs]
    summaries = summarize(table, records)
    outputs = Outputs(report_dir / f"{table.name}.csv", report_dir / f"{table.name}.md",
                      report_dir / f"{table.name}.png", failures)  # fmt: skip
    write_csv(records, outputs.csv, CSV_FIELDS)
    data = jobs[0].cfg.data.name
    title = report_title(table, jobs[0].cfg)
    if table.plot == "pareto":
        figures.pareto(summaries, records, title, outputs.figure)
    elif table.plot == "curves":
        runs = {row.name: [job.run_dir for job in jobs if job.row.name == row.name] for row in table.rows}
        figures.curves(runs, title, outputs.figure)
    else:
        figures.tradeoff(summaries, title, outputs.figure)
    lines = [f"# {title}: {seeds} seed(s) per row", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Timed on: {machine()}, using one core, after training, {how_timed(jobs)}; "
              f"{other_work.describe(timed)}.", ""]  # fmt: skip
    if data != table.dataset:
        lines += [f"The paper's numbers are on {table.dataset}; ours on {data}: compare the method, not "
                  "the numbers.", ""]  # fmt: skip
    lines.append(markdown_table(summaries))
    if table.plot == "pareto":
        lines += ["Error-latency front at batch 1 (a gated row is on it when no dense net at most as "
                  "slow has a lower mean error):", ""]  # fmt: skip
        lines += [f"- {verdict}" for verdict in pareto_verdicts(summaries)]
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {f}" for f in failures]
    write_atomic(outputs.markdown, "\n".join(lines) + "\n")
    return outputs
