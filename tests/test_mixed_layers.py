"""Gated nets with dense layers (model.gated): a dense trunk routing a gated layer, and the reverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condnet.checkpoint import Checkpoint, read_checkpoint
from condnet.config import Config, ModelConfig, validate
from condnet.data.splits import load_idx_splits
from condnet.engine import Engine
from condnet.errors import ConfigError
from condnet.nn.checkpoint import load_checkpoint, save_checkpoint
from condnet.nn.condnet import CondNet
from condnet.nn.macs import active_macs
from condnet.train.evaluate import evaluate
from condnet.train.loop import train
from test_training import small_config


def trunk_model(kind="condnet") -> CondNet:
    """784-style toy: 10 inputs, a dense 8-unit trunk, then a gated layer of 6 blocks of 4 units."""
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, widths=[8, 24], block_size=[8, 4], gated=[False, True], tau=[0.5])
    return CondNet(10, 3, validate(Config(model=cfg)).model).eval()


def test_only_gated_layers_have_policies():
    model = trunk_model()
    policy_tensors = {k for k in model.state_dict() if k.startswith("policies.")}
    assert policy_tensors == {"policies.1.Z", "policies.1.d"}
    assert model.policies[1].Z.shape == (6, 8)  # the gated layer is routed from the trunk's output
    assert model.policy_rows == [0, 6]
    out = model(torch.rand(5, 10), "sample", torch.Generator().manual_seed(0))
    assert out.layers[0].sigma is None and torch.equal(out.layers[0].mask, torch.ones(5, 1))
    assert out.layers[1].sigma.shape == (5, 6)


def test_macs_of_a_mixed_net_by_hand():
    # dense trunk 10 x 8 (no policy), gated layer: policy 8 x 6, 2 of 6 blocks of 4 on -> 8 x 8,
    # output: 8 active units x 3
    masks = [torch.ones(1, 1), torch.tensor([[1.0, 0, 0, 1, 0, 0]])]
    macs = active_macs(10, [8, 4], 3, masks, [0, 6])
    assert macs.item() == 10 * 8 + 8 * 6 + 8 * 8 + 8 * 3


@pytest.mark.parametrize("load", [load_checkpoint, read_checkpoint], ids=["torch", "numpy"])
def test_checkpoint_round_trip(tmp_path, load):
    model = trunk_model()
    save_checkpoint(model, tmp_path)
    loaded = load(tmp_path)
    cfg = loaded.model if isinstance(loaded, Checkpoint) else loaded.cfg
    assert cfg == model.cfg and cfg.gated == [False, True]


@pytest.mark.parametrize("kind", ["condnet", "bdnn"])
@pytest.mark.parametrize("batch", [1, 7])
def test_engine_matches_the_model(kind, batch):
    model = trunk_model(kind)
    x = np.random.default_rng(1).random((batch, 10), dtype=np.float32)
    logits, masks = Engine(model).forward(x, "sample", seed=0)
    assert masks[0].all()  # the dense trunk is never gated
    with torch.no_grad():
        expected = model(torch.from_numpy(x), masks=[torch.from_numpy(m.astype(np.float32)) for m in masks])
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_gated_values_are_refused():
    for value in ([True, False, True], ["yes", True], 1):
        with pytest.raises(ConfigError, match="model.gated"):
            validate(Config(model=ModelConfig(widths=[8, 8], block_size=[4, 4], gated=value)))


def test_a_dense_trunk_with_a_gated_layer_learns(idx_dir):
    sets = [
        "model.widths=[16, 64]",
        "model.block_size=[16, 8]",
        "model.gated=[false, true]",
        "model.tau=0.25",
    ]
    cfg = small_config(idx_dir, *sets)
    splits = load_idx_splits(idx_dir, 200)
    result = train(cfg, splits)
    test = evaluate(result.model, splits.x_test, splits.y_test, "sample")
    assert test.error < 0.25, test.error
    assert test.activation_rate[0] == 1.0 and test.activation_rate[1] < 0.6
