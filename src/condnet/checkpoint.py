"""The checkpoint format, read and written with numpy only (the engine loads runs without PyTorch).

A checkpoint is `model.safetensors` (the tensors) and `model.json` (what is needed to rebuild the
model: architecture, activation, policy range...). model.json records the SHA-256 of the tensor file
and of its own other fields, so a truncated file or an edited field is refused. No pickle.
The PyTorch side (`condnet.nn.checkpoint`) converts a CondNet to and from this.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condnet import gates
from condnet.config import ModelConfig, from_dict
from condnet.errors import CheckpointError, ConfigError

FORMAT = "condnet-checkpoint"
VERSION = 2  # 2: model.json checks its own fields too (record_sha256)
TENSORS, META = "model.safetensors", "model.json"


@dataclass
class Checkpoint:
    """A trained network as plain arrays: what the engine and the PyTorch model are both built from."""

    input_dim: int
    n_classes: int
    model: ModelConfig
    tensors: dict[str, np.ndarray]  # CondNet's state_dict names -> float32 arrays


def expected_shapes(input_dim: int, n_classes: int, model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensors a CondNet of this configuration has (its state_dict's names and shapes)."""
    dims = [input_dim, *model.widths]
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        shapes[f"hidden.{index}.weight"] = (n_out, n_in)
        shapes[f"hidden.{index}.bias"] = (n_out,)
    shapes["output.weight"] = (n_classes, dims[-1])
    shapes["output.bias"] = (n_classes,)
    return shapes | gates.tensor_shapes(model, input_dim)


def write_checkpoint(checkpoint: Checkpoint, directory: str | Path) -> None:
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(array) for name, array in checkpoint.tensors.items()}
    save_file(tensors, str(directory / TENSORS))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "input_dim": checkpoint.input_dim,
        "n_classes": checkpoint.n_classes,
        "model": dataclasses.asdict(checkpoint.model),
        "sha256": hashlib.sha256((directory / TENSORS).read_bytes()).hexdigest(),
    }
    meta["record_sha256"] = _record_hash(meta)
    (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


def _record_hash(meta: dict) -> str:
    """SHA-256 of model.json's fields other than itself, in a canonical form (sorted keys, no spaces)."""
    fields = {k: v for k, v in meta.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_checkpoint(directory: str | Path) -> Checkpoint:
    """Read and verify the checkpoint in `directory`; CheckpointError says what is wrong and what to do."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

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
                f"{meta_path} has version {meta.get('version')}; this condnet reads {VERSION} (retrain the "
                f"run, or read it with the condnet that wrote it)"
            )
        if meta.get("record_sha256") != _record_hash(meta):
            raise CheckpointError(
                f"{meta_path} was edited after it was written (its fields do not match their recorded "
                f"SHA-256); restore it from the original run"
            )
        model = from_dict({"model": meta["model"]}).model
        input_dim, n_classes, expected_hash = int(meta["input_dim"]), int(meta["n_classes"]), meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
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
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensor_path} cannot be read: {exc}") from None
    expected = expected_shapes(input_dim, n_classes, model)
    if set(tensors) != set(expected) or any(
        tensors[k].shape != expected[k] or tensors[k].dtype != np.float32 for k in expected
    ):
        raise CheckpointError(f"{tensor_path} does not hold the tensors that {meta_path} describes")
    return Checkpoint(input_dim, n_classes, model, tensors)
