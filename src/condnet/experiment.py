"""A run from config to run directory: train, evaluate on the test set, save, plot.

RUN_DIR receives config.toml, metrics.jsonl (one line per epoch), metrics.json (the final report),
analysis.json (more statistics), model.safetensors + model.json, PNG plots and finished.json. It is
written aside and put in place whole (condnet.run_dir), so a killed run leaves no half run behind.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from condnet.config import Config, load_config, to_toml
from condnet.data.splits import load_splits
from condnet.errors import CheckpointError, CondnetError
from condnet.limits import TRAINING_COPIES, check_model_fits
from condnet.nn.checkpoint import load_checkpoint, save_checkpoint
from condnet.nn.macs import dense_macs
from condnet.report.plots import learning_curves, policy_figure
from condnet.run_dir import (
    ANALYSIS,
    CONFIG,
    LEARNING_CURVES,
    METRICS,
    RunDir,
    policy_figure_name,
    write_atomic,
    write_json,
)
from condnet.train.evaluate import class_specificity, evaluate
from condnet.train.loop import EpochRecord, train


def run_training(
    cfg: Config,
    out: str | Path,
    force: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    resume: bool = False,
) -> dict:
    """Train as cfg says into RUN_DIR (see condnet.run_dir: trained aside, put in place when whole).
    resume: continue the unfinished run of RUN_DIR from its last finished epoch (cfg must be its
    config). Returns the final report (metrics.json)."""
    run = RunDir(out)
    if run.path.exists() and not run.path.is_dir():
        raise CondnetError(f"--out {run.path} is a file, not a directory")
    with run.lock():
        if not resume:
            _check_free(run, force)
        splits = load_splits(cfg.data)  # before anything is written: bad data leaves no unfinished run
        # nor a model too big for memory
        check_model_fits(cfg.model, splits.input_dim, splits.n_classes, TRAINING_COPIES)
        work = run.start(resume)
        if resume and load_config(work / CONFIG) != cfg:
            raise CondnetError(f"--resume continues {work} with its own config.toml; give no other config")
        write_atomic(work / CONFIG, to_toml(cfg))
        result = train(cfg, splits, on_batch, on_epoch, workdir=work)
        metrics = _write_results(cfg, result, splits, work)
        run.commit()
    return metrics


def _check_free(run: RunDir, force: bool) -> None:
    """A new run may not replace a finished one, or discard an unfinished one, without --force."""
    if force:
        return
    if run.has_partial():
        raise CondnetError(
            f"an unfinished run of {run.path} is in {run.partial} (after {run.epochs_done()} epochs): "
            f"`condnet train --resume {run.path}` continues it; --force starts again"
        )
    if run.path.is_dir() and any(run.path.iterdir()):
        what = "holds a finished run" if run.is_finished() else "is not empty"
        raise CondnetError(
            f"run directory {run.path} {what}; choose another --out or pass --force to replace it "
            f"(it is replaced only when the new run has finished)"
        )


def _write_results(cfg: Config, result, splits, work: Path) -> dict:
    """Test the trained model and write the checkpoint, metrics.json, analysis.json and the plots."""
    model = result.model
    save_checkpoint(model, work)
    batch = cfg.train.eval_batch_size
    sample = evaluate(model, splits.x_test, splits.y_test, "sample", batch, cfg.seed)
    threshold = (
        None
        if not cfg.model.has_threshold_mode
        else evaluate(model, splits.x_test, splits.y_test, "threshold", batch)
    )
    metrics = {
        "test_error": {"sample": sample.error, "threshold": None if threshold is None else threshold.error},
        "activation_rate": sample.activation_rate,
        "macs": sample.macs,
        "dense_macs": dense_macs(model.input_dim, cfg.model.widths, model.n_classes),
        "epochs": len(result.history),
        "train_seconds": result.train_seconds,
        "seed": cfg.seed,
        "trained_on": socket.gethostname(),  # runs may train on any machine of a cluster (condnet.cluster)
    }
    write_json(work / METRICS, metrics)
    analysis = {
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.train_seconds / len(result.history),
        "test_loss": {"sample": sample.loss, "threshold": None if threshold is None else threshold.loss},
        "threshold_activation_rate": None if threshold is None else threshold.activation_rate,
        "threshold_macs": None if threshold is None else threshold.macs,
        "policy_entropy_bits": sample.entropy,
        # per layer: mean over classes of the L1 distance between class-mean and overall-mean sigma
        "class_specificity": [
            0.0 if s is None else class_specificity(s, splits.y_test) for s in sample.sigmas
        ],
    }
    write_json(work / ANALYSIS, analysis)
    valid_label = "valid (sample mode)" if cfg.model.is_gated else "valid"  # how training validated
    learning_curves([asdict(r) for r in result.history], work / LEARNING_CURVES, valid_label)
    for layer, sigma in enumerate(sample.sigmas):
        if sigma is not None:
            means = model.policies[layer].spec.sigma_means
            policy_figure(sigma, splits.y_test, layer, work / policy_figure_name(layer), means)
    return metrics


def load_run(run_dir: str | Path):
    """A finished run's config, model (from its checkpoint) and data splits, checked to fit together."""
    run_dir = RunDir(run_dir).require_finished()
    cfg = load_config(run_dir / CONFIG)
    model = load_checkpoint(run_dir)
    if model.cfg != cfg.model:
        raise CheckpointError(
            f"{run_dir / CONFIG}'s [model] does not match the checkpoint's model.json (was one of them "
            f"edited?); restore config.toml from the original run"
        )
    splits = load_splits(cfg.data)
    if splits.input_dim != model.input_dim:
        raise CondnetError(
            f"the data has {splits.input_dim} inputs, the checkpoint expects {model.input_dim}"
        )
    return cfg, model, splits


def engine_threshold_error(run_dir: str | Path, batch_size: int = 500) -> float:
    """The test error of the run's checkpoint computed by the inference engine, threshold mode."""
    from condnet.engine import Engine

    _, model, splits = load_run(run_dir)
    engine = Engine(model)
    x, y = splits.x_test.numpy(), splits.y_test.numpy()
    wrong = sum(int((engine.forward(x[i : i + batch_size])[0].argmax(1) != y[i : i + batch_size]).sum())
                for i in range(0, len(x), batch_size))  # fmt: skip
    return wrong / len(x)


def evaluate_run(run_dir: str | Path, mode: str, seed: int | None = None):
    """Recompute the test metrics of a finished run from its checkpoint and config."""
    cfg, model, splits = load_run(run_dir)
    if mode == "threshold" and not cfg.model.has_threshold_mode:
        raise CondnetError(
            "bdNN has no threshold mode: its uniform policy (rate tau) has no input to threshold"
        )
    seed = cfg.seed if seed is None else seed
    return evaluate(model, splits.x_test, splits.y_test, mode, cfg.train.eval_batch_size, seed)
