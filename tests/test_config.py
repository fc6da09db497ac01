"""Bad configurations give errors that name the field and what is allowed."""

from __future__ import annotations

import pytest

from condnet.config import load_config, to_toml
from condnet.errors import ConfigError


@pytest.mark.parametrize(
    "override, field, allowed",
    [
        ("model.colour=1", "model.colour", "allowed in \\[model\\]"),
        ("model.tau=1.5", "model.tau", "\\(0, 1\\]"),
        ("model.tau=0", "model.tau", "\\(0, 1\\]"),
        ("model.block_size=24", "model.block_size\\[0\\]", "divisor of the layer width 256"),
        ("train.lr_net=-0.1", "train.lr_net", "> 0"),
        ("train.lr_policy=-1", "train.lr_policy", ">= 0"),
        ("train.optimizer=rmsprop", "train.optimizer", "sgd, adam"),
        ("model.kind=moe", "model.kind", "condnet, nn, bdnn"),
        ("train.batch_size=0", "train.batch_size", ">= 1"),
        ("train.batch_size=2.5", "train.batch_size", "whole number"),
        ("model.tau=[0.1, 0.2]", "model.tau", "one per hidden layer"),
        ("model.p_max=1.0", "model.p_max", "\\(0.5, 1\\)"),
        ("train.lambda_s=nan", "train.lambda_s", "finite"),
        ("data.name=cifar", "data.name", "mnist, cifar10, svhn, idx"),
        ("data.name=idx", "data.dir", "IDX files"),
        ("seed=-3", "seed", "from 0 to 2\\^63 - 1"),
    ],
)
def test_bad_values_are_named(override, field, allowed):
    with pytest.raises(ConfigError, match=f"{field}.*{allowed}"):
        load_config(None, [override])


def test_unknown_section_and_malformed_override():
    with pytest.raises(ConfigError, match="unknown top-level key 'optim'"):
        load_config(None, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr_net"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nkind = 'nn'")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_per_layer_values_broadcast_and_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.widths=[64, 32]", "model.block_size=16", "train.lr_policy=[1e-3, 2e-3]"])
    assert cfg.model.block_size == [16, 16] and cfg.model.tau == [1 / 16, 1 / 16]
    assert cfg.train.lr_policy == [1e-3, 2e-3]
    path = tmp_path / "resolved.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path) == cfg


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
    assert len(configs) >= 4
    for path in configs:
        load_config(path)
