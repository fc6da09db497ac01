"""Run every row of a table for N seeds (resumable, W in parallel), then time every finished run.

Layout: OUT/<row>/seed-<n>/ is an ordinary run directory (`condnet train`'s), plus timing.json.
- A finished run is never redone (if its config.toml is the one asked for; otherwise the command
  stops); an interrupted or failed one continues from its last finished epoch (condnet.run_dir).
- Training runs on a Dask cluster (condnet.cluster): by default W local worker processes with
  `threads` cores each, which end when this process dies (even by SIGKILL), so no orphan keeps
  training. Timing runs afterwards, one run at a time in this process, on one core, so that no
  training disturbs it, and every latency of a report comes from this machine; each run is timed in
  several rounds, in turn with the others, and credited with its medians (time_all).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from condnet import logs
from condnet.config import Config, load_config
from condnet.engine.timing import machine
from condnet.errors import CondnetError
from condnet.reproduce.tables import CONFIG_DIR, Row, Table, config_path
from condnet.run_dir import CONFIG, FAILED, RunDir, write_atomic

ROUNDS = 3  # each run timed this many times, in turn with the others (time_all)
TEST_BATCH = 50  # the paper's test batch: one pass over the test set is timed at this batch size


@dataclass
class Job:
    row: Row
    seed: int
    run_dir: Path
    cfg: Config


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Cores each training process uses: `threads` if given, else the machine's cores shared evenly."""
    return threads or max(1, (os.cpu_count() or 1) // workers)


def plan(
    table: Table,
    seeds: int,
    out: Path,
    overrides: list[str],
    config_dir: Path = CONFIG_DIR,
    first_seed: int = 0,
):
    """Every (row, seed) of the table with its resolved config; configs are checked before any run."""
    if seeds < 1:
        raise CondnetError(f"--seeds must be at least 1, got {seeds}")
    return [
        Job(row, seed, out / row.name.replace("/", "_") / f"seed-{seed}",
            load_config(config_path(row, config_dir), [*overrides, *row.overrides], seed))
        for row in table.rows
        for seed in range(first_seed, first_seed + seeds)
    ]  # fmt: skip


def is_finished(run_dir: Path) -> bool:
    return RunDir(run_dir).is_finished()


def can_resume(run_dir: Path, cfg: Config) -> bool:
    """An unfinished run in run_dir with the same config continues; another config starts again."""
    config = RunDir(run_dir).partial / CONFIG
    try:
        return config.is_file() and load_config(config) == cfg
    except CondnetError:
        return False


def train_job(cfg: Config, run_dir: str, threads: int) -> str:
    """One training run (on a cluster worker): continues the run's unfinished `.partial` when it has
    this config (also after a worker died in it), else starts it again. Its CondnetError is recorded in
    the partial's failed.txt and raised."""
    from condnet.experiment import run_training

    torch.set_num_threads(threads)
    try:
        metrics = run_training(cfg, run_dir, force=True, resume=can_resume(Path(run_dir), cfg))
    except CondnetError as exc:
        partial = RunDir(run_dir).partial
        partial.mkdir(parents=True, exist_ok=True)
        write_atomic(partial / FAILED, f"{exc}\n")
        raise
    return f"test error {100 * metrics['test_error']['sample']:.2f}% after {metrics['epochs']} epochs"


def check_same_config(jobs: list[Job]) -> None:
    """A finished run is only reused for the config it was trained with."""
    for job in jobs:
        # parsed, not as text: a field added since the run was trained takes its default on both sides
        if is_finished(job.run_dir) and load_config(job.run_dir / CONFIG) != job.cfg:
            raise CondnetError(
                f"{job.run_dir} was trained with another config than this command gives it (a different "
                "--set?); use another --out, or delete that directory to train it again"
            )


def train_all(
    jobs: list[Job], workers: int, threads: int, log=logs.info, address: str | None = None, on_done=None
) -> list[str]:
    """Train every unfinished job on a Dask cluster (condnet.cluster: local unless `address`); returns
    the failures (the others keep going when one fails). on_done(outcome): called as each one ends."""
    from condnet import cluster

    check_same_config(jobs)
    todo = [job for job in jobs if not is_finished(job.run_dir)]
    log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already finished; {len(todo)} to train")
    if not todo:
        return []
    from condnet.data.splits import load_splits

    for data in {json.dumps(job.cfg.data.__dict__, sort_keys=True): job.cfg.data for job in todo}.values():
        load_splits(data)  # fetch once, here, and fail before any run when the data is missing
    resumed = sum(can_resume(job.run_dir, job.cfg) for job in todo)
    if resumed:
        log(f"{resumed} of them continue from their last finished epoch")
    named = [
        (f"{job.row.name} seed {job.seed}", train_job, (job.cfg, str(job.run_dir), threads)) for job in todo
    ]
    with cluster.cluster(workers, threads, address, log) as client:
        outcomes = cluster.run_jobs(client, named, log, on_done=on_done)
    runs = {name: job for (name, _, _), job in zip(named, todo, strict=True)}
    return [f"{o.name}: {o.error} (its log: {RunDir(runs[o.name].run_dir).partial / FAILED})"
            for o in outcomes if o.value is None]  # fmt: skip


def time_run(run_dir: Path, repeats: int) -> dict:
    """Batch-1 latency (dense PyTorch, dense ONNX Runtime, the engine) and one test-set pass at batch 50
    (dense PyTorch against the engine), one core."""
    from condnet.bench.compare import bench, dense_forward
    from condnet.engine import Engine
    from condnet.engine.timing import interleaved_medians
    from condnet.experiment import load_run

    _, model, splits = load_run(run_dir)
    x = splits.x_test.numpy()
    engine = Engine(model, threads=1)
    latency = bench(model, x, [1], [1], "sample", repeats, engine=engine)[0]
    dense = dense_forward(model)
    chunks = [x[i : i + TEST_BATCH] for i in range(0, len(x), TEST_BATCH)]
    tensors = [torch.from_numpy(c) for c in chunks]
    rng = np.random.default_rng(0)
    seconds = interleaved_medians(
        {
            "dense": lambda: [dense(t) for t in tensors],
            "engine": lambda: [engine.forward(c, "sample", seed=rng) for c in chunks],
        },
        repeats=max(1, repeats // 3),
        warmup=1,
    )
    return {
        "batch1_dense_ms": latency.dense_ms,
        "batch1_engine_ms": latency.engine_ms,
        "batch1_ort_ms": latency.ort_ms,  # the dense twin in ONNX Runtime (timed by bench anyway)
        "test_pass_dense_s": seconds["dense"],
        "test_pass_engine_s": seconds["engine"],
        "test_examples": len(x),
        "threads": 1,
        "machine": machine(),
    }


def _is_time(key: str) -> bool:
    return key.endswith(("_ms", "_s"))


def median_timing(timings: list[dict]) -> dict:
    """One timing from several rounds of one run: each measured time the median of its rounds (None if
    a round did not measure it), the other fields as the first round gives them, and every round's
    times ("per_round": what lets a rerun add the rounds a stopped step did not take)."""
    merged = dict(timings[0], rounds=len(timings))
    merged["per_round"] = [{key: t[key] for key in t if _is_time(key)} for t in timings]
    for key in timings[0]:
        if _is_time(key):
            values = [t[key] for t in timings]
            merged[key] = None if None in values else statistics.median(values)
    return merged


def _rounds_done(run_dir: Path, rounds: int, retime: bool) -> list[dict] | None:
    """The rounds a run keeps from its timing.json: all of them (None: nothing to time), those of a
    step stopped before `rounds` on this machine (to be completed), or none (to be timed anew: retime,
    no timing yet, or rounds timed on another machine). An older condnet's timing (once, no count of
    rounds) is kept as it is until retime."""
    timing = None if retime else RunDir(run_dir).timing()
    if timing is None:
        return []
    if "rounds" not in timing or timing["rounds"] >= rounds:
        return None
    per_round = timing.get("per_round")
    if not per_round or timing.get("machine") != machine():
        return []
    others = {key: value for key, value in timing.items() if key not in ("rounds", "per_round")}
    return [{**others, **times} for times in per_round]


def how_timed(jobs: list[Job]) -> str:
    """How the timed runs among `jobs` were timed, for a report: the rounds their timing.json records
    (an older condnet timed each run once and wrote no count)."""
    timings = [RunDir(job.run_dir).timing() for job in jobs if is_finished(job.run_dir)]
    counts = sorted({timing.get("rounds", 1) for timing in timings if timing is not None})
    if not counts:
        return "no run timed here"
    rounds = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    said = f"each run in {rounds} round{'s' if counts[-1] > 1 else ''} in turn with the others (its medians)"
    if counts[0] < ROUNDS:
        said += (f" (fewer than {ROUNDS}: timed by an older condnet, or by a timing step stopped early, "
                 f"whose rounds a rerun completes; --retime times every run in {ROUNDS})")  # fmt: skip
    return said


def time_all(jobs: list[Job], repeats: int, retime: bool = False, log=logs.info, rounds: int = ROUNDS) -> int:
    """Time every finished run that has no timing.json yet (all of them with retime), or whose timing
    step was stopped before its last round (only the rounds it lacks); returns how many runs it timed.
    Each run is timed in each of `rounds` rounds and credited with the medians: on a shared machine a
    slow spell while a run is timed moves it by 15 % or more. A round takes the seeds in turn (every
    config's first seed, then every config's second...), each other round in the reverse order, so
    that a slow spell is spread over the configs rather than falling on one."""
    done = {j.run_dir: _rounds_done(j.run_dir, rounds, retime) for j in jobs if is_finished(j.run_dir)}
    todo = [j for j in jobs if done.get(j.run_dir) is not None]
    log(f"timing {len(todo)} runs on one core, {rounds} rounds in turn")
    order = sorted(todo, key=lambda job: job.seed)  # stable: configs keep their order within a seed
    timings: dict[Path, list[dict]] = {job.run_dir: done[job.run_dir] for job in order}
    try:
        for round_ in range(rounds):
            for index, job in enumerate(order if round_ % 2 == 0 else order[::-1], 1):
                if len(timings[job.run_dir]) >= rounds:  # its stopped step had timed it in this round
                    continue
                timing = time_run(job.run_dir, repeats)
                timings[job.run_dir].append(timing)
                where = f"[round {round_ + 1}/{rounds}, {index}/{len(order)}] {job.row.name} seed {job.seed}"
                log(f"{where}: batch 1 {timing['batch1_dense_ms']:.3f} ms dense, "
                    f"{timing['batch1_engine_ms']:.3f} ms engine")  # fmt: skip
    finally:  # a step stopped early keeps what it measured, with its count of rounds (how_timed says so)
        for job in order:
            if timings[job.run_dir]:
                RunDir(job.run_dir).write_timing(median_timing(timings[job.run_dir]))
    return len(todo)
