"""`condnet search SPACE.toml`: Optuna chooses configs; each trial trains a run and is scored by its
validation error and its measured batch-1 latency on one core (two objectives; the result is the
Pareto set of trials). The test split is never read for a choice.

- Storage: Optuna's journal file (OUT/journal.log by default), so a killed search resumes and several
  processes share it (condnet.search.journal: a torn last line is cut, a live process's trial is never
  failed by another, `--trials N` is N in all), or a PostgreSQL database that searches on several
  machines share (condnet.search.database). Trials a killed search left running are failed and tried
  again.
- A trial's run is OUT/runs/<hash of its resolved config>: a config drawn twice is trained once, and a
  trial interrupted mid-training continues from its last epoch (condnet.run_dir).
- Latency: the engine's for gated nets; for dense nets the fastest of PyTorch, the engine and ONNX
  Runtime (what a user would deploy). With several workers, a trial is timed while the others train:
  the Pareto set should be timed again alone (`condnet frontier` does).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from condnet import logs
from condnet.bench.deployed import deployed_latency
from condnet.cluster import cluster as cluster_of
from condnet.cluster import run_jobs
from condnet.config import to_toml
from condnet.errors import CondnetError
from condnet.reproduce.runner import can_resume, threads_per_worker
from condnet.run_dir import RunDir, write_csv
from condnet.search import database, journal
from condnet.search.space import Space, load_space

OBJECTIVES = ("valid_error", "b1_latency_us")
TIMING_REPEATS = 9


@dataclass
class SearchOutputs:
    csv: Path
    pareto: list[dict]  # one dict per Pareto-optimal trial (a row of the CSV)
    trials: int


def run_dir_of(out: Path, toml: str) -> Path:
    return out / "runs" / hashlib.sha256(toml.encode()).hexdigest()[:12]


def best_validation_error(run_dir: Path) -> float:
    """The validation error of the epoch that early stopping kept (the run's model)."""
    return RunDir(run_dir).best_valid_error()


def batch1_latency_us(run_dir: Path, repeats: int = TIMING_REPEATS) -> tuple[float, str]:
    """Median batch-1 latency on one core, on validation inputs, and what ran it (condnet.bench.deployed)."""
    import torch

    from condnet.bench.compare import bench
    from condnet.experiment import load_run

    cfg, model, splits = load_run(run_dir)
    training_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as every latency of the front
    try:
        record = bench(model, splits.x_valid[:512].numpy(), [1], [1], "sample", repeats)[0]
    finally:
        torch.set_num_threads(training_threads)
    times = {"pytorch": record.dense_ms, "onnxruntime": record.ort_ms, "engine": record.engine_ms}
    latency, source = deployed_latency(times, cfg.model.is_gated)
    return 1e3 * latency, source


def share_entropies(run_dir: Path) -> list[float]:
    """Per gated layer, the entropy in bits of how the validation examples spread over its blocks
    (condnet.report.experts.share_entropy_bits, threshold mode): 0 when the router sends every example
    to the same blocks, a net that routes in name only (the best tree trial did: RESULTS 8.11)."""
    import torch

    from condnet.experiment import load_run
    from condnet.report.experts import share_entropy_bits

    _, model, splits = load_run(run_dir)
    with torch.no_grad():
        layers = model(splits.x_valid, mode="threshold").layers
    gated = [model.policy(i) is not None for i in range(len(layers))]
    return [round(share_entropy_bits(t.mask), 4) for t, g in zip(layers, gated, strict=True) if g]


def objective(space: Space, out: Path, trial) -> tuple[float, float]:
    from condnet.experiment import run_training

    cfg = space.config({p.key: p.suggest(trial) for p in space.params})
    toml = to_toml(cfg)
    run = RunDir(run_dir_of(out, toml))
    trial.set_user_attr("config", toml)
    trial.set_user_attr("run_dir", str(run.path))
    if not run.is_finished():
        run_training(cfg, run.path, force=True, resume=can_resume(run.path, cfg))
    latency, source = batch1_latency_us(run.path)
    trial.set_user_attr("latency_from", source)
    if cfg.model.is_gated:
        trial.set_user_attr("share_entropy_bits", share_entropies(run.path))
    metrics = RunDir(run.path).metrics()  # the trial's cost, kept in the study: its run may not be
    trial.set_user_attr("epochs", metrics["epochs"])
    trial.set_user_attr("train_seconds", metrics["train_seconds"])
    return best_validation_error(run.path), latency


def shared_storage(storage, study_name: str):
    """The study's storage: a journal file (condnet.search.journal) or a database URL (.database)."""
    if database.is_url(storage):
        return database.Database(str(storage), study_name)
    return journal.Journal(storage)


def _study(space: Space, storage, worker: int = 0):
    """The study (created if new) in its journal file or database; worker: seeds its own sampler, and so
    does the number of trials the study already holds: a resumed search seeded as at its start drew the
    same random first suggestions again, and trained a config it had already trained (4 distinct runs
    among 9 complete trials of mnist_input_tree, over three restarts)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = shared_storage(storage, space.name).storage()
    study = optuna.create_study(
        study_name=space.name, storage=backend, directions=["minimize", "minimize"], load_if_exists=True
    )
    held = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=1000 * space.seed + worker + 1_000_003 * held)
    return study


def open_study(storage, name: str):
    """A study that exists, read without writing to its storage: `_study`'s create_study(load_if_exists)
    appends a record to a journal at every read, so reading a committed journal changed it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not database.is_url(storage) and not Path(storage).is_file():
        raise CondnetError(f"no search journal at {storage}: give the search's journal file or database URL")
    backend = shared_storage(storage, name).storage()
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        held = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        raise CondnetError(f"{storage} holds no study named {name!r} (it holds {held})") from None


def trials_done(study) -> int:
    """Finished trials: complete, or failed by their own error (not those a killed search left)."""
    return _counts(study)[0]


def _worker(space_path: str, storage: str, out: str, trials: int, threads: int, worker: int) -> str:
    """Run trials until the study holds `trials` finished or running ones (any process's, any machine's)."""
    import optuna
    import torch

    torch.set_num_threads(threads)
    space = load_space(space_path)
    study = _study(space, storage, worker)
    shared = shared_storage(storage, space.name)
    while (asked := shared.next_trial(study, trials, _counts)) is not None:
        trial, holding = asked
        with holding:  # the trial's lock or heartbeat: it is not taken for abandoned while it runs
            try:
                values = objective(space, Path(out), trial)
            except (
                CondnetError
            ) as exc:  # this trial's own failure (a bad config): recorded, the search goes on
                trial.set_user_attr("error", str(exc))
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, values)
    return f"{trials_done(study)} trials done in the study"


def _counts(study) -> tuple[int, int]:
    """(finished, running) trials, from one read of the study: counted in two reads, a trial that another
    process finished between them was in neither, and one trial too many was asked (5 for `--trials 4`,
    seen with two processes on one PostgreSQL study)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.FAIL) and not t.user_attrs.get("interrupted")
                   for t in trials)  # fmt: skip
    return finished, sum(t.state == TrialState.RUNNING for t in trials)


def rows(study) -> list[dict]:
    """Every trial as a CSV row: its number, state, objectives, parameters, run and config."""
    table = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name}
        row.update(zip(OBJECTIVES, t.values or [None, None], strict=True))
        row["latency_from"] = t.user_attrs.get("latency_from")
        row.update({f"param:{k}": v for k, v in t.params.items()})
        row["run_dir"] = t.user_attrs.get("run_dir")
        table.append(row)
    return table


def run_search(
    space_path: Path,
    trials: int,
    out: Path,
    storage: str | Path | None = None,
    workers: int = 1,
    threads: int | None = None,
    log=logs.info,
    cluster: str | None = None,
) -> SearchOutputs:
    """Run the search until the study holds `trials` finished or failed trials; write OUT/search.csv
    (every trial) and OUT/pareto.csv (the Pareto set)."""
    for name, value in (("--trials", trials), ("--workers", workers)):
        if value < 1:
            raise CondnetError(f"{name} must be at least 1, got {value}")
    space = load_space(space_path)
    storage = storage or out / "journal.log"
    with RunDir(out).lock():  # one search per output directory
        out.mkdir(parents=True, exist_ok=True)
        shared_storage(storage, space.name).prepare(log)
        study = _study(space, storage)
        before = trials_done(study)
        log(f"{space.name}: {before} of {trials} trials done; {max(0, trials - before)} to run")
        if before < trials:
            threads = threads_per_worker(workers, threads)
            args = (str(space_path), str(storage), str(out), trials, threads)
            jobs = [(f"search worker {w}", _worker, (*args, w)) for w in range(workers)]
            progress = (trials, lambda: trials_done(study), "trial")  # the bar counts trials, not workers
            with cluster_of(workers, threads, cluster, log) as client:
                outcomes = run_jobs(client, jobs, log, unit="worker", progress=progress)
                failed = [o for o in outcomes if o.value is None]
            if failed:
                raise CondnetError(f"{failed[0].name} failed: {failed[0].error}")
        study = open_study(storage, space.name)
        table = rows(study)
        write_csv(table, out / "search.csv")
        pareto_numbers = {t.number for t in study.best_trials}
        pareto = [row for row in table if row["trial"] in pareto_numbers]
        write_csv(pareto or [{"trial": None}], out / "pareto.csv")
    return SearchOutputs(out / "search.csv", sorted(pareto, key=lambda r: r["b1_latency_us"]), len(table))
