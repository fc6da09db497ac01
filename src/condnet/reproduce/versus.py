"""`condnet versus GATED_RUN DENSE_RUN`: one gated run against one dense run, as `make run` shows them.

Both runs are timed here, one after the other in one process, on one core, as `condnet frontier` times
its runs (the gated net in the engine; the dense net in the fastest of PyTorch, the engine and ONNX
Runtime), and their test errors (sample mode) are read from their reports. With one seed each this is
an illustration, not a verdict: the verdict needs the seeds of `condnet frontier` (docs/frontier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condnet.config import load_config
from condnet.errors import CondnetError
from condnet.reproduce.frontier import run_latency
from condnet.reproduce.runner import time_run
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


def contender(run_dir: Path, gated: bool, repeats: int) -> Contender:
    run = RunDir(run_dir).require_finished()
    latency, source, test_pass = run_latency(time_run(run, repeats), gated)
    error = RunDir(run).metrics()["test_error"]["sample"]
    return Contender(run, gated, error, 1e3 * latency, source, 1e3 * test_pass)


def versus(gated_run: Path, dense_run: Path, repeats: int = 15) -> tuple[Contender, Contender, str]:
    """(the gated contender, the dense one, a one-line verdict). The runs' kinds are checked before
    either is timed."""
    first, second = is_gated(gated_run), is_gated(dense_run)
    if not first or second:
        raise CondnetError(f"give a gated run first and a dense run (model.kind = nn) second; "
                           f"{gated_run} is {'gated' if first else 'dense'}, "
                           f"{dense_run} is {'gated' if second else 'dense'}")  # fmt: skip
    gated, dense = contender(gated_run, True, repeats), contender(dense_run, False, repeats)
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
