"""Trainings on a real Dask scheduler and workers on localhost (condnet.cluster): a worker killed in the
middle of a run has its job run again on another worker, which resumes it from its last finished epoch
and ends bit-identical to a run never stopped; a frontier and a reproduction give the local runs byte for
byte; an unreachable scheduler is a one-line error; a search's progress counts its trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from condnet.config import load_config
from condnet.errors import CondnetError
from condnet.reproduce.runner import Job, train_all
from condnet.run_dir import RunDir
from test_runs import SLOW, condnet, train_args, wait_for
from test_training import SMALL

DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def scheduler(tmp_path):
    """A Dask scheduler on localhost and a function that starts a worker for it (no nanny: a killed
    worker stays dead, as a lost machine would)."""
    processes, file = [], tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    command = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    command += ["--scheduler-file", str(file)]
    processes.append(subprocess.Popen(command, **quiet))
    wait_for(file.exists, timeout=60)
    address = json.loads(file.read_text())["address"]

    def add_worker():
        processes.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny",
                                           "--no-dashboard", "--host", "127.0.0.1"], **quiet))  # fmt: skip

    yield address, add_worker
    for process in processes:
        process.kill()
        process.wait()


def job(idx_dir, out: Path, *sets: str) -> Job:
    cfg = load_config(None, [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", *sets])
    return Job(types.SimpleNamespace(name="small"), cfg.seed, out, cfg)


def test_a_killed_workers_run_resumes_on_another_worker_bit_identical(scheduler, idx_dir, tmp_path):
    from distributed import Client

    address, add_worker = scheduler
    sets = [*SLOW, "train.max_epochs=6", "model.dropout=0.0"]
    whole = tmp_path / "whole"
    assert condnet(*train_args(idx_dir, *sets), "--out", str(whole)).wait() == 0
    add_worker()
    add_worker()
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    run = RunDir(tmp_path / "killed")
    result, lines = {}, []
    worker = threading.Thread(
        target=lambda: result.update(
            failures=train_all([job(idx_dir, run.path, *sets)], 1, 1, lines.append, address)
        )  # fmt: skip
    )
    worker.start()
    wait_for(lambda: run.epochs_done() >= 1)
    pid = int(Path(str(run.path.with_name(f".{run.path.name}.lock"))).read_text())  # the worker training it
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=600)
    assert result["failures"] == [], lines
    assert any("1 runs in" in line or "1 run in" in line for line in lines), lines
    for name in ("model.safetensors", "model.json", "config.toml"):
        assert (whole / name).read_bytes() == (run.path / name).read_bytes(), name
    assert json.loads((run.path / "metrics.json").read_text())["trained_on"]


def test_an_unreachable_scheduler_is_named(idx_dir, tmp_path):
    with pytest.raises(CondnetError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        train_all([job(idx_dir, tmp_path / "run")], 1, 1, print, "tcp://127.0.0.1:9")


def test_a_search_on_the_external_cluster(scheduler, idx_dir, tmp_path):
    from distributed import Client

    from condnet.cli import main
    from test_search import _states, write_space

    address, add_worker = scheduler
    add_worker()
    add_worker()
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    params = '"train.lr_net" = { low = 1e-3, high = 0.02, log = true }'
    space, out = write_space(tmp_path, idx_dir, params, name="on-dask"), tmp_path / "search"
    args = ["search", space, "--trials", "4", "--workers", "2", "--threads", "1", "--out", str(out)]
    assert main([*args, "--cluster", address]) == 0
    assert _states(space, out / "journal.log") == ["COMPLETE"] * 4


def test_a_frontier_on_the_external_cluster_gives_the_local_runs(scheduler, idx_dir, tmp_path):
    """The same configs trained by the local default and by two external workers: byte-identical models
    (same CPU), and the report names every run."""
    from distributed import Client

    from condnet.cli import main
    from condnet.config import to_toml

    address, add_worker = scheduler
    add_worker()
    add_worker()
    configs = tmp_path / "configs"
    configs.mkdir()
    common = [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=2"]
    for name, extra in (("dense", "model.kind=nn"), ("topk", "model.router=topk")):
        (configs / f"{name}.toml").write_text(to_toml(load_config(None, [*common, extra])))
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    for where, cluster in (("local", []), ("remote", ["--cluster", address])):
        report = str(tmp_path / f"report-{where}")
        args = ["frontier", "idx", "--configs", str(configs), "--seeds", "2", "--timing-repeats", "1",
                "--workers", "2", "--out", str(tmp_path / where), "--report", report]  # fmt: skip
        assert main([*args, *cluster]) == 0
    runs = sorted((tmp_path / "local").glob("*/seed-*"))
    assert len(runs) == 4
    for run in runs:
        remote = tmp_path / "remote" / run.relative_to(tmp_path / "local")
        assert (run / "model.safetensors").read_bytes() == (remote / "model.safetensors").read_bytes(), run


def test_a_reproduction_on_the_external_cluster_gives_the_local_runs(scheduler, svhn_dir, tmp_path):
    """`condnet reproduce svhn` (six rows, one epoch) by local workers and by two external ones: the
    same models byte for byte (same CPU), every row finished in both reports."""
    import csv

    from distributed import Client

    from condnet.cli import main

    address, add_worker = scheduler
    add_worker()
    add_worker()
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    for where, cluster in (("local", []), ("remote", ["--cluster", address])):
        report = tmp_path / f"report-{where}"
        args = ["reproduce", "svhn", "--seeds", "1", "--timing-repeats", "1", "--set", "train.max_epochs=1",
                "--workers", "2", "--out", str(tmp_path / where), "--report", str(report),
                "--data-dir", str(svhn_dir), "--set", "data.valid_size=50"]  # fmt: skip
        assert main([*args, *cluster]) == 0
        with open(report / "svhn.csv") as f:
            assert [row["status"] for row in csv.DictReader(f)] == ["finished"] * 6
    runs = sorted((tmp_path / "local").glob("*/seed-*"))
    assert len(runs) == 6
    for run in runs:
        remote = tmp_path / "remote" / run.relative_to(tmp_path / "local")
        assert (run / "model.safetensors").read_bytes() == (remote / "model.safetensors").read_bytes(), run


class ThreadClient:
    """Dask's Client.submit over a thread pool: run_jobs' bookkeeping without a cluster."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(2)

    def submit(self, fn, *args, pure=True):
        return self.pool.submit(fn, *args)


def test_job_progress_can_count_something_else_than_jobs():
    """A search's two workers run its 7 trials: the progress (and the closing line) counts trials."""
    from condnet.cluster import run_jobs

    trials = {"n": 0}

    def worker(name):
        trials["n"] += 7 if name == "a" else 0
        return name

    def fails(name):
        raise CondnetError(f"{name} broke")

    lines = []
    jobs = [("worker a", worker, ("a",)), ("worker b", worker, ("b",)), ("worker c", fails, ("c",))]
    outcomes = run_jobs(
        ThreadClient(), jobs, lines.append, unit="worker", progress=(7, lambda: trials["n"], "trial")
    )
    assert sorted(o.value or o.error for o in outcomes) == ["a", "b", "c broke"]
    assert "3 workers in" in lines[-1] and "; 7 of 7 trials" in lines[-1]
    assert any(line.endswith("worker c (" + outcomes[0].host + "): FAILED: c broke") for line in lines)


def test_the_local_cluster_keeps_its_housekeeping_quiet():
    """Dask's defaults cost a training ~9 % of a core (docs/cluster_idle_cost.py): a profiler sampling
    the worker's threads every 10 ms, a 20 ms tick and a 0.5 s system monitor, in the worker and in the
    command's process. The local cluster's workers, and the command, run without them."""
    import dask

    from condnet.cluster import cluster

    def settings() -> tuple:
        get = dask.config.get
        return (get("distributed.worker.profile.enabled"), get("distributed.admin.tick.interval"),
                get("distributed.admin.system-monitor.interval"))  # fmt: skip

    with cluster(1, 1, None, lambda line: None) as client:
        on_worker = list(client.run(settings).values())
        in_command = settings()
    assert on_worker == [(False, "1s", "5s")] and in_command == (False, "1s", "5s")
    assert dask.config.get("distributed.worker.profile.enabled") is True  # the caller's config is restored
