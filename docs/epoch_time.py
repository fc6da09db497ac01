"""Seconds per training epoch of a config on the first N training examples, one thread: for comparing
two versions of the training code side by side (run it alternately with each on PYTHONPATH).

    PYTHONPATH=SRC .venv/bin/python docs/epoch_time.py CONFIG.toml [N] [EPOCHS]
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from condnet.config import load_config
from condnet.data.splits import load_splits
from condnet.train.loop import TrainState, teacher_logits, train_epoch


def main() -> None:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 6400
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.set_num_threads(1)
    cfg = load_config(path)
    splits = load_splits(cfg.data)
    splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n],
                                 x_valid=splits.x_valid[:500], y_valid=splits.y_valid[:500])  # fmt: skip
    state, teacher = TrainState.new(cfg, splits), teacher_logits(cfg, splits)
    train_epoch(state, cfg, splits, 1, None, teacher)  # warm-up: first allocations and caches
    seconds = [train_epoch(state, cfg, splits, e, None, teacher).train_seconds for e in range(2, epochs + 2)]
    print(f"{path}: {n} examples, {min(seconds):.3f} s per epoch (min of {epochs})")


if __name__ == "__main__":
    main()
