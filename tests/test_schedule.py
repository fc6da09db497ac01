"""The learning-rate schedule against its formula, weight decay, and a resumed run across a step."""

from __future__ import annotations

import math

import pytest
import torch

from condnet.config import load_config
from condnet.train.loop import lr_factor, make_optimizer
from test_training import small_config


def test_warm_up_then_cosine_by_hand():
    cfg = load_config(None, ["train.schedule=cosine", "train.warmup_epochs=2", "train.max_epochs=10"])
    assert lr_factor(cfg, 0.5) == pytest.approx(0.25)  # warm-up: progress / 2
    assert lr_factor(cfg, 2.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 6.0) == pytest.approx(0.5)  # half-way through the 8 cosine epochs
    assert lr_factor(cfg, 4.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(cfg, 10.0) == pytest.approx(0.0, abs=1e-12)
    constant = load_config(None, ["train.warmup_epochs=1"])
    assert lr_factor(constant, 0.25) == pytest.approx(0.25) and lr_factor(constant, 7.0) == 1.0


def test_the_optimizer_steps_with_the_scheduled_rate(idx_dir):
    """One training epoch of 10 batches with a 1-epoch warm-up: the last step's rate is the full one,
    and every group's rate is its own initial rate times the factor."""
    from condnet.data.splits import load_idx_splits
    from condnet.train.loop import TrainState, train_epoch

    cfg = small_config(idx_dir, "train.warmup_epochs=2", "train.schedule=cosine", "train.max_epochs=4")
    splits = load_idx_splits(idx_dir, 200)
    state = TrainState.new(cfg, splits)
    train_epoch(state, cfg, splits, 1)
    for group in state.optimizer.param_groups:  # after epoch 1 of a 2-epoch warm-up: half the rate
        assert group["lr"] == pytest.approx(group["initial_lr"] * 0.5)


def test_weight_decay_is_decoupled_and_on_the_network_only():
    cfg = load_config(None, ["train.optimizer=adam", "train.weight_decay=0.01"])
    from condnet.nn.condnet import CondNet

    optimizer = make_optimizer(CondNet(12, 3, cfg.model), cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]


def test_a_run_resumed_across_the_warm_up_ends_bit_identical(idx_dir, tmp_path):
    from condnet.data.splits import load_idx_splits
    from condnet.train.loop import train

    extra = ["train.warmup_epochs=1.5", "train.schedule=cosine", "train.max_epochs=3", "train.patience=10",
             "train.weight_decay=0.001", "model.dropout=0.1"]  # fmt: skip
    cfg = small_config(idx_dir, *extra)
    splits = load_idx_splits(idx_dir, 200)
    whole = train(cfg, splits).model.state_dict()
    short = small_config(idx_dir, *extra)
    work = tmp_path / "work"
    work.mkdir()
    stop = {"epochs": 0}

    def kill_after_two(record):
        stop["epochs"] += 1
        if stop["epochs"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(short, splits, on_epoch=kill_after_two, workdir=work)
    resumed = train(cfg, splits, workdir=work).model.state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
