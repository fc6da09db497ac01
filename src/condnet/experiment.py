"""A run from config to run directory: train, evaluate on the test set, save, plot.

RUN_DIR receives config.toml, metrics.jsonl (one line per epoch, written as it ends), metrics.json (the
final report), analysis.json (more statistics), model.safetensors + model.json, and PNG plots.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from condnet.config import Config, load_config, to_toml
from condnet.data.splits import load_splits
from condnet.errors import CondnetError
from condnet.nn.macs import dense_macs
from condnet.report.plots import learning_curves, policy_figure
from condnet.train.checkpoint import load_checkpoint, save_checkpoint
from condnet.train.evaluate import class_specificity, evaluate
from condnet.train.loop import EpochRecord, train


def prepare_run_dir(out: str | Path, force: bool = False) -> Path:
    """Create RUN_DIR; refuse to overwrite a finished or started run unless force."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CondnetError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CondnetError(
            f"run directory {out} is not empty; choose another --out or pass --force to overwrite it"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    return out


def run_training(
    cfg: Config,
    out: str | Path,
    force: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> dict:
    """Train as cfg says and write everything into RUN_DIR. Returns the final report (metrics.json)."""
    out = prepare_run_dir(out, force)
    (out / "config.toml").write_text(to_toml(cfg))
    splits = load_splits(cfg.data)

    def log_epoch(record: EpochRecord) -> None:
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(asdict(record)) + "\n")
        if on_epoch:
            on_epoch(record)

    result = train(cfg, splits, on_batch, log_epoch)
    model = result.model
    save_checkpoint(model, out)

    batch = cfg.train.eval_batch_size
    sample = evaluate(model, splits.x_test, splits.y_test, "sample", batch, cfg.seed)
    threshold = (
        None
        if cfg.model.kind == "bdnn"
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
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
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
    (out / "analysis.json").write_text(json.dumps(analysis, indent=2) + "\n")
    learning_curves([asdict(r) for r in result.history], out / "learning_curves.png")
    for layer, sigma in enumerate(sample.sigmas):
        if sigma is not None:
            policy_figure(sigma, splits.y_test, layer, out / f"policy_layer{layer + 1}.png")
    return metrics


def load_run(run_dir: str | Path):
    """A finished run's config, model (from its checkpoint) and data splits, checked to fit together."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.toml")
    model = load_checkpoint(run_dir)
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
    if mode == "threshold" and cfg.model.kind == "bdnn":
        raise CondnetError(
            "bdNN has no threshold mode: its uniform policy (rate tau) has no input to threshold"
        )
    seed = cfg.seed if seed is None else seed
    return evaluate(model, splits.x_test, splits.y_test, mode, cfg.train.eval_batch_size, seed)
