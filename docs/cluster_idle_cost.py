"""What Dask's housekeeping costs a training on the local cluster (condnet.cluster.QUIET): the CPU used,
as a share of one core, by the command's process and by the worker while the worker's one job sleeps
(so all of it is housekeeping), at Dask's defaults and at condnet's settings, alternated ROUNDS times in
one run. On a machine whose cores all train, that share is taken from the training.

    .venv/bin/python docs/cluster_idle_cost.py [SECONDS] [ROUNDS]
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager

from condnet import cluster


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sleep_job(seconds: float) -> float:
    start = cpu_seconds()
    time.sleep(seconds)
    return (cpu_seconds() - start) / seconds


def measure(clusters, seconds: float) -> tuple[float, float]:
    """(command's share, worker's share) of one core while one job sleeps `seconds`."""
    with clusters(1, 1, None, lambda line: None) as client:
        start, begin = cpu_seconds(), time.perf_counter()
        (outcome,) = cluster.run_jobs(client, [("sleep", sleep_job, (seconds,))], log=lambda line: None)
        return (cpu_seconds() - start) / (time.perf_counter() - begin), outcome.value


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print("| settings | round | command's process (% of a core) | worker (% of a core) | sum |")
    print("|---|---|---|---|---|")
    settings = (("Dask's defaults", contextmanager(cluster._cluster)), ("condnet (QUIET)", cluster.cluster))
    for round_ in range(1, rounds + 1):
        for name, clusters in settings:
            command, worker = (100 * share for share in measure(clusters, seconds))
            print(f"| {name} | {round_} | {command:.1f} | {worker:.1f} | {command + worker:.1f} |")


if __name__ == "__main__":
    main()
