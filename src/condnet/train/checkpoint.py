"""Checkpoints: `model.safetensors` (the tensors) and `model.json` (what is needed to rebuild the model,
and the SHA-256 of the tensor file, so a truncated or altered file is refused). No pickle."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from condnet.config import from_dict
from condnet.errors import CheckpointError, ConfigError
from condnet.nn.condnet import CondNet

FORMAT = "condnet-checkpoint"
VERSION = 1
TENSORS, META = "model.safetensors", "model.json"


def save_checkpoint(model: CondNet, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / TENSORS))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "input_dim": model.input_dim,
        "n_classes": model.n_classes,
        "model": dataclasses.asdict(model.cfg),
        "sha256": hashlib.sha256((directory / TENSORS).read_bytes()).hexdigest(),
    }
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


def load_checkpoint(directory: str | Path) -> CondNet:
    """Rebuild the model saved in `directory`; CheckpointError says what is wrong and what to do."""
    directory = Path(directory)
    meta_path, tensor_path = directory / META, directory / TENSORS
    for path in (meta_path, tensor_path):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: {directory} is not a complete condnet checkpoint")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path} is not a condnet checkpoint (format {meta.get('format')!r})")
        if meta.get("version") != VERSION:
            raise CheckpointError(
                f"{meta_path} has version {meta.get('version')}; this condnet reads {VERSION}"
            )
        model_cfg = from_dict({"model": meta["model"]}).model
        input_dim, n_classes, expected_hash = int(meta["input_dim"]), int(meta["n_classes"]), meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise CheckpointError(f"{meta_path} holds an invalid model configuration: {exc}") from None
        raise CheckpointError(f"{meta_path} is corrupt ({exc}); retrain or restore the file") from None
    data = tensor_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_hash:
        raise CheckpointError(
            f"{tensor_path} does not match the SHA-256 recorded in {meta_path}: the file was truncated or "
            f"altered; restore it from the original run"
        )
    try:
        state = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{tensor_path} cannot be read: {exc}") from None
    model = CondNet(input_dim, n_classes, model_cfg)
    expected = model.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(f"{tensor_path} does not hold the tensors that {meta_path} describes")
    model.load_state_dict(state)
    model.eval()
    return model
