"""How long a training takes to recover when the machine running it dies (condnet.cluster, issue 21): a
real Dask scheduler and two workers on localhost (no nanny: a killed worker stays dead, as a lost
machine would), one training of CONFIG; once it has finished its first epoch, its worker is killed
(SIGKILL). Measured, per repeat: the time from the kill until another worker holds the run again
(the scheduler notices the lost worker and resubmits the job), until the resumed run finishes its next
epoch, and the work lost (the part of the epoch in progress at the kill).

    .venv/bin/python docs/cluster_recovery.py [CONFIG] [REPEATS]   (default: configs/default.toml, 3)
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

from condnet.config import load_config
from condnet.reproduce.runner import Job, train_all
from condnet.run_dir import RunDir

DASK = str(Path(sys.executable).with_name("dask"))


def wait_for(condition, timeout: float = 600.0, every: float = 0.01) -> float:
    """Poll until condition() holds; the time it first held."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the run did not get there in time")
        time.sleep(every)
    return time.monotonic()


def holder(run: RunDir) -> int | None:
    """The pid of the process training the run (its lock file), if any."""
    try:
        return int(run.path.with_name(f".{run.path.name}.lock").read_text())
    except (OSError, ValueError):
        return None


def once(config: str, tmp: Path) -> tuple[float, float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    file = tmp / "scheduler.json"
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(file)], **quiet)]  # fmt: skip
    try:
        wait_for(file.exists, 60)
        address = json.loads(file.read_text())["address"]
        worker = [DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        worker += ["--host", "127.0.0.1"]
        processes += [subprocess.Popen(worker, **quiet) for _ in range(2)]
        cfg = load_config(config, ["train.max_epochs=4", "train.patience=100"])
        run = RunDir(tmp / "run")
        job = Job(types.SimpleNamespace(name="recovery"), cfg.seed, run.path, cfg)
        trainer = threading.Thread(target=train_all, args=([job], 1, 1, lambda line: None, address))
        trainer.start()
        wait_for(lambda: run.epochs_done() >= 1)
        epoch_ended = time.monotonic()
        time.sleep(1.0)  # into the second epoch
        victim = holder(run)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        held_again = wait_for(lambda: holder(run) not in (None, victim))
        next_epoch = wait_for(lambda: run.epochs_done() >= 2)
        trainer.join(600)
        return held_again - killed, next_epoch - killed, killed - epoch_ended
    finally:
        for process in processes:
            process.kill()
            process.wait()


def main() -> None:
    config = sys.argv[1] if len(sys.argv) > 1 else "configs/default.toml"
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(once(config, Path(tmp)))
        held, epoch, lost = results[-1]
        print(f"repeat {r}: another worker held the run {held:.2f} s after the kill; its next epoch ended "
              f"{epoch:.1f} s after; work lost at the kill: {lost:.1f} s")  # fmt: skip
    for name, values in zip(("held again", "next epoch", "lost"), zip(*results, strict=True), strict=True):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        every = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name}: mean {statistics.mean(values):.2f} s, sd {spread:.2f} s; every repeat: {every}")


if __name__ == "__main__":
    main()
