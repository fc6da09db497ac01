"""Many trainings on a Dask cluster: the one way `reproduce`, `frontier` and `search` run their work.

A job is "train this config into this run directory": it resumes the run's unfinished `.partial` when
one exists with the same config, so a job whose worker died (a killed process, a lost machine) is run
again by Dask elsewhere and continues from its last finished epoch, ending bit-identical (same CPU) to
a run never stopped (condnet.run_dir, condnet.train.loop).

Where the jobs run:
- by default, a local cluster started for the command: `workers` processes of `threads` cores each
  (no set-up; the workers end with the command, even when it is killed);
- `--cluster ADDRESS` (or the CONDNET_CLUSTER environment variable): a running Dask scheduler
  (`dask scheduler`, then `dask worker ADDRESS --nthreads 1` on each machine); every worker must see
  the run directories (a shared disk) and have condnet installed.

Why Dask: a scheduler, workers on any number of machines, jobs retried when a worker dies and a
dashboard, all well kept, instead of our own process pools and orphan handling.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from condnet import logs
from condnet.errors import CondnetError

CLUSTER_ENV = "CONDNET_CLUSTER"
CONNECT_TIMEOUT = "10s"
# Dask's housekeeping at its defaults costs each local training ~9 % of a core (4-5 % in the worker,
# where a profiler samples the training thread every 10 ms, as much in the command's process):
# measured by docs/cluster_idle_cost.py, ~2.5 % with these. No dashboard is used, so nothing is lost.
QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",  # the event loop's blocked-loop check (20 ms)
    "distributed.admin.system-monitor.interval": "5s",  # CPU and memory figures for the dashboard (0.5 s)
}


@dataclass
class Outcome:
    name: str  # what the job is, for messages ("row seed 3", "trial 12")
    value: object  # the job's result, None when it failed
    error: str  # why it failed ("" when it did not)
    host: str  # the machine that ran it


def end_with_parent() -> None:
    """In each local worker: the kernel kills it when the command's process dies (even by SIGKILL)."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextmanager
def cluster(workers: int, threads: int, address: str | None = None, log=logs.info) -> Iterator:
    """A dask.distributed Client: on the scheduler at `address` (or $CONDNET_CLUSTER), else on a local
    cluster of `workers` processes (each job sets its own `threads`). Dask's housekeeping is kept quiet
    (QUIET) in this process and in the local workers, which take this process's config."""
    import dask
    import distributed  # noqa: F401  (its defaults join dask's config first: leaving set() removes what it added)

    with dask.config.set(QUIET):
        yield from _cluster(workers, threads, address, log)


def _cluster(workers: int, threads: int, address: str | None, log) -> Iterator:
    import logging

    from distributed import Client, LocalCluster

    address = address or os.environ.get(CLUSTER_ENV) or None
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise CondnetError(
                f"cannot reach the Dask scheduler at {address} ({exc}); start one (`dask scheduler`) or "
                f"leave out --cluster and {CLUSTER_ENV} to train on this machine"
            ) from None
        with client:
            workers_seen = len(client.scheduler_info(n_workers=-1)["workers"])
            log(f"training on the Dask cluster at {address} ({workers_seen} workers now)")
            yield client
        return
    # ":0": any free port for the scheduler's HTTP server (two commands at once collided on 8787)
    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.ERROR)  # fmt: skip
    with local, Client(local) as client:
        client.run(end_with_parent)
        yield client


PROGRESS_POLL = 0.05  # seconds between looks at the jobs
COUNT_POLL = 1.0  # seconds between reads of progress' count (a search's: its journal or database)


def run_jobs(
    client,
    jobs: list[tuple[str, Callable, tuple]],
    log=logs.info,
    unit: str = "run",
    progress=None,
    on_done=None,
) -> list[Outcome]:
    """Run every job (name, function, arguments) on the cluster, with one progress bar for all (on a
    terminal); a job's CondnetError is its failure (its Outcome's value is None, its error the
    message); the others keep going. progress: (total, count, unit) when the jobs' progress is not
    their number, as a search's workers' is its trials: the bar shows count() of total, read every
    COUNT_POLL seconds. on_done(outcome): called in this process as each job ends."""
    from tqdm import tqdm

    # a job whose worker died is run again elsewhere by the scheduler (up to its allowed-failures, 3);
    # one that raised is not (a bug does not fix itself)
    futures = {client.submit(_call, fn, args, pure=False): name for name, fn, args in jobs}
    outcomes, failed, start = [], 0, time.perf_counter()
    total, count, bar_unit = progress or (len(futures), None, unit)
    pending, counted_at = set(futures), -COUNT_POLL
    with tqdm(total=total, unit=bar_unit, file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
        while pending:
            finished = [future for future in pending if future.done()]
            if count is not None and time.perf_counter() - counted_at >= COUNT_POLL:
                bar.update(count() - bar.n)
                counted_at = time.perf_counter()
            if not finished:
                time.sleep(PROGRESS_POLL)
                continue
            for future in finished:
                pending.discard(future)
                name = futures[future]
                try:
                    value, error, host = future.result()
                except Exception as exc:  # the job's own bug, or its workers kept dying
                    value, error, host = None, f"{type(exc).__name__}: {exc}", "?"
                failed += value is None
                outcomes.append(Outcome(name, value, error, host))
                bar.set_postfix_str(f"{failed} failed" if failed else "", refresh=False)
                if count is None:
                    bar.update()
                done = f"[{len(outcomes)}/{len(futures)}] {name} ({host})"
                log(f"{done}: FAILED: {error}" if value is None else f"{done}: {value}")
                if on_done is not None:
                    on_done(outcomes[-1])
    hosts = Counter(o.host for o in outcomes)
    counted = f"; {count()} of {total} {bar_unit}s" if count is not None else ""
    log(f"{len(outcomes)} {unit}s in {time.perf_counter() - start:.0f} s{counted}, "
        + ", ".join(f"{n} on {host}" for host, n in hosts.most_common()))  # fmt: skip
    return outcomes


def _call(fn: Callable, args: tuple):
    try:
        return fn(*args), "", socket.gethostname()
    except CondnetError as exc:
        return None, str(exc), socket.gethostname()
