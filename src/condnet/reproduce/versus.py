"""`condnet versus GATED_RUN DENSE_RUN`: one gated run against one dense run, as `make run` shows them.

Both runs are timed here in one process, on one core, as `condnet frontier` times its runs (the gated
net in the engine; the dense net in the fastest of PyTorch, the engine and ONNX Runtime), in turn for
ROUNDS rounds, each contender credited with the median of its rounds: on a shared machine a slow spell
during one contender's only timing could flip the verdict. Their test errors (sample mode) are read
from their reports. With one seed each this is an illustration, not a verdict: the verdict needs the
seeds of `condnet frontier` (docs/frontier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condnet.config import load_config
from condnet.errors import CondnetError
from condnet.reproduce.frontier import run_latency
from condnet.reproduce.runner import ROUNDS, median_timing, time_run
from condnet.run_dir import CONFIG, RunDir


@dataclass
class Contender:
    run_dir: Path
    gated: bool
    test_error: float  # a fraction, sample mode
    latency_us: float  # batch 1, one core
    latency_from: str
    pass_ms: float  # one test pass at batch 50


def is_gated(run_dir: Path) -> bool:
    """Whether a finished run is a gated net (some layer decides its blocks per example)."""
    return load_config(RunDir(run_dir).require_finished() / CONFIG).model.is_gated


def read_test_error(run_dir: Path) -> float:
    """A finished run's test error, sample mode (a fraction)."""
    run = RunDir(run_dir)
    run.require_finished()
    return run.metrics()["test_error"]["sample"]


def contender(run_dir: Path, gated: bool, timings: list[dict]) -> Contender:
    """A run credited with the medians of its timings, as `condnet frontier` credits its runs."""
    latency, source, test_pass = run_latency(median_timing(timings), gated)
    return Contender(run_dir, gated, read_test_error(run_dir), 1e3 * latency, source, 1e3 * test_pass)


def versus(gated_run: Path, dense_run: Path, repeats: int = 15) -> tuple[Contender, Contender, str]:
    """(the gated contender, the dense one, a one-line verdict). The runs' kinds are checked before
    either is timed."""
    first, second = is_gated(gated_run), is_gated(dense_run)
    if not first or second:
        raise CondnetError(f"give a gated run first and a dense run (model.kind = nn) second; "
                           f"{gated_run} is {'gated' if first else 'dense'}, "
                           f"{dense_run} is {'gated' if second else 'dense'}")  # fmt: skip
    timings = {gated_run: [], dense_run: []}
    for round_ in range(ROUNDS):  # in turn, each first in every other round
        for run in (gated_run, dense_run) if round_ % 2 == 0 else (dense_run, gated_run):
            timings[run].append(time_run(run, repeats))
    gated = contender(gated_run, True, timings[gated_run])
    dense = contender(dense_run, False, timings[dense_run])
    faster = gated.latency_us <= dense.latency_us
    better = gated.test_error < dense.test_error
    if faster and better:
        verdict = "the gated net is both faster and more accurate (one seed each)"
    elif not faster and not better:
        verdict = "the dense net is both faster and at least as accurate: the gated net is dominated"
    else:
        verdict = (f"the gated net is {'faster' if faster else 'slower'} and "
                   f"{'more' if better else 'less'} accurate: neither dominates (one seed each)")  # fmt: skip
    return gated, dense, verdict
