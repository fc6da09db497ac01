"""Trainings per hour with 1 and with 2 local Dask workers (one core each) on this machine: the same 4
small MNIST runs (784-128-10, Adam, 3 epochs), trained by `condnet.reproduce.runner.train_all` as
reproduce and frontier train them, into fresh directories each time.

    .venv/bin/python docs/cluster_throughput.py [OUT]
"""

from __future__ import annotations

import shutil
import sys
import time
import types
from pathlib import Path

from condnet.config import load_config
from condnet.reproduce.runner import Job, train_all

RUNS = 4
SETS = ["model.kind=nn", "model.widths=[128]", "model.block_size=[128]", "train.max_epochs=3"]


def seconds(out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    jobs = [Job(types.SimpleNamespace(name=f"run{i}"), i, out / f"run{i}",
                load_config("mnist_condnet.toml", SETS, seed=i)) for i in range(RUNS)]  # fmt: skip
    start = time.perf_counter()
    failures = train_all(jobs, workers, 1, log=lambda line: None)
    assert not failures, failures
    return time.perf_counter() - start


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cluster_throughput")
    one, two = seconds(out / "w1", 1), seconds(out / "w2", 2)
    print(f"{RUNS} runs: 1 worker {one:.1f} s, 2 workers {two:.1f} s; throughput x{one / two:.2f}")


if __name__ == "__main__":
    main()
