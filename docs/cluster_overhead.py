"""What Dask adds to `reproduce`, `frontier` and `search` (condnet.cluster): the time to start the local
cluster, and the scheduling overhead per job (jobs that do nothing, so that all of their time is
overhead), on the machine this runs on.

    .venv/bin/python docs/cluster_overhead.py [WORKERS] [JOBS]
"""

from __future__ import annotations

import sys
import time

from condnet import cluster


def nothing(i: int) -> str:
    return "done"


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    start = time.perf_counter()
    with cluster.cluster(workers, 1, log=lambda line: None) as client:
        started = time.perf_counter() - start
        begin = time.perf_counter()
        cluster.run_jobs(client, [(f"job {i}", nothing, (i,)) for i in range(jobs)], log=lambda line: None)
        per_job = (time.perf_counter() - begin) / jobs
    share = 100 * per_job / 60
    print(f"{workers} local workers: cluster started in {started:.2f} s; {jobs} empty jobs, "
          f"{1e3 * per_job:.2f} ms per job ({share:.4f} % of a one-minute training)")  # fmt: skip


if __name__ == "__main__":
    main()
