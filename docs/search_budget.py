"""Every search space's budget and best points, read from its journal (issue 19 asks each space's budget
beside its results: trials, epochs, what was searched). One markdown row per space: trials complete
(failed; interrupted by a stopped search, and asked again), distinct runs (a config drawn twice is
trained once), epochs and training core-hours over them (the runs' own training seconds, one core each,
timing excluded: from the journal, which keeps them since 2026-12-04, else from the run if this machine
still holds it, else counted as unknown), the searched parameters, and the lowest validation error in
each band of search-time batch-1 latency. Validation only: no test error is read. Latencies are the
search's (timed beside other work: noisy). JOURNAL: the search's OUT directory or its journal file.

    .venv/bin/python docs/search_budget.py SPACE.toml JOURNAL [SPACE.toml JOURNAL ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from condnet.run_dir import RunDir
from condnet.search.space import load_space
from condnet.search.study import open_study, rows

BANDS = [(0, 10), (10, 30), (30, 100), (100, 300), (300, float("inf"))]  # microseconds


def band_label(low: float, high: float) -> str:
    return f">= {low:g} us" if high == float("inf") else f"{low:g}-{high:g} us"


def cost(trial) -> dict | None:
    """A complete trial's epochs and training seconds: from the journal, else from its run, else None."""
    if "train_seconds" in trial.user_attrs:
        return trial.user_attrs
    run = RunDir(trial.user_attrs["run_dir"])
    return run.metrics() if run.is_finished() else None


def budget_row(space_path: Path, journal: Path) -> str:
    space = load_space(space_path)
    study = open_study(journal / "journal.log" if journal.is_dir() else journal, space.name)
    complete = [t for t in rows(study) if t["state"] == "COMPLETE"]
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state.name == "FAIL"]
    interrupted = sum(bool(t.user_attrs.get("interrupted")) for t in failed)  # asked again, not failures
    runs = {t.user_attrs["run_dir"]: cost(t) for t in trials if t.state.name == "COMPLETE"}
    finished = [c for c in runs.values() if c is not None]
    epochs = sum(c["epochs"] for c in finished)
    hours = sum(c["train_seconds"] for c in finished) / 3600  # one core each (the searches' --threads 1)
    best = []
    for low, high in BANDS:
        inside = [t for t in complete if low <= t["b1_latency_us"] < high]
        if inside:
            t = min(inside, key=lambda t: t["valid_error"])
            best.append(f"{100 * t['valid_error']:.2f} % ({t['b1_latency_us']:.0f} us)")
        else:
            best.append("—")
    counts = f"{len(complete)} ({len(failed) - interrupted}; {interrupted})"
    searched = ", ".join(p.key for p in space.params)
    per_trial = f"{60 * hours / len(finished):.1f}" if finished else "—"
    unknown = f"; {len(runs) - len(finished)} runs unknown" if len(finished) < len(runs) else ""
    spent = f"{len(runs)} | {epochs} | {hours:.1f} ({per_trial}{unknown})"
    return f"| {space_path.stem} | {counts} | {spent} | {searched} | {' | '.join(best)} |"


def main(args: list[str]) -> None:
    if not args or len(args) % 2:
        sys.exit("usage: python docs/search_budget.py SPACE.toml JOURNAL [SPACE.toml JOURNAL ...]")
    bands = " | ".join(band_label(*band) for band in BANDS)
    head = ("space | trials complete (failed; interrupted) | distinct runs | epochs trained | "
            "training core-hours (minutes per run) | searched")  # fmt: skip
    print(f"| {head} | {bands} |")
    print("|---|---|---|---|---|---|" + "---|" * len(BANDS))
    for space_path, journal in zip(args[::2], args[1::2], strict=True):
        print(budget_row(Path(space_path), Path(journal)))


if __name__ == "__main__":
    main(sys.argv[1:])
