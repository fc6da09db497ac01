"""Checkpoints: bit-identical round trip; truncated or altered files are refused with a clear error, by
the PyTorch loader and by the torch-free one the engine uses alike."""

from __future__ import annotations

import json

import pytest
import torch

from condnet.checkpoint import _record_hash, read_checkpoint
from condnet.config import Config, ModelConfig, validate
from condnet.errors import CheckpointError
from condnet.nn.checkpoint import load_checkpoint, save_checkpoint
from condnet.nn.condnet import CondNet


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = validate(Config(model=ModelConfig(widths=[32, 16], block_size=[8, 4], activation="relu")))
    net = CondNet(10, 4, cfg.model)
    save_checkpoint(net, tmp_path)
    return net, tmp_path


both_loaders = pytest.mark.parametrize("load", [load_checkpoint, read_checkpoint], ids=["torch", "numpy"])


def test_round_trip_is_bit_identical_in_threshold_mode(saved):
    net, path = saved
    loaded = load_checkpoint(path)
    x = torch.randn(64, 10)
    with torch.no_grad():
        assert torch.equal(net(x, mode="threshold").logits, loaded(x, mode="threshold").logits)
    assert loaded.cfg == net.cfg


@both_loaders
def test_truncated_tensor_file(saved, load):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load(path)


@both_loaders
def test_altered_tensor_file(saved, load):
    _, path = saved
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load(path)


@both_loaders
def test_missing_and_corrupt_metadata(saved, load):
    _, path = saved
    (path / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load(path)
    (path / "model.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load(path)


@both_loaders
def test_metadata_that_does_not_match_the_tensors(saved, load):
    _, path = saved
    meta = json.loads((path / "model.json").read_text())
    meta["model"]["widths"] = [64, 16]
    meta["record_sha256"] = _record_hash(meta)  # a consistent record of the wrong tensors
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not hold the tensors"):
        load(path)


@both_loaders
@pytest.mark.parametrize(
    "field, value",
    [("activation", "tanh"), ("p_min", 0.3), ("p_max", 0.6), ("kind", "bdnn"), ("tau", [0.5, 0.5]),
     ("input_dim", 10.0), ("n_classes", 5)],
)  # fmt: skip
def test_an_edited_field_of_model_json_is_refused(saved, load, field, value):
    """Fields that change results without changing a tensor's shape (p_min moved an error from 50.8 %
    to 25.1 % when model.json could be edited)."""
    _, path = saved
    meta = json.loads((path / "model.json").read_text())
    (meta if field in meta else meta["model"])[field] = value
    (path / "model.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(CheckpointError, match="was edited"):
        load(path)


def test_the_numpy_reader_gives_the_models_tensors(saved):
    net, path = saved
    checkpoint = read_checkpoint(path)
    assert (checkpoint.input_dim, checkpoint.n_classes, checkpoint.model) == (10, 4, net.cfg)
    state = net.state_dict()
    assert checkpoint.tensors.keys() == state.keys()
    for name, value in state.items():
        assert checkpoint.tensors[name].dtype == "float32"
        assert (checkpoint.tensors[name] == value.numpy()).all()
