"""Training time per epoch with and without the block-by-block forward (condnet.nn.active_blocks), side by
side in one process, on MNIST's training split: wide gated input layers (one expert per example) and the
paper's narrow Bernoulli layer (where the masked dense product is kept). One thread, like a search worker.

    .venv/bin/python docs/train_speed.py [EPOCHS]
"""

from __future__ import annotations

import sys

import torch

from condnet.config import load_config
from condnet.data.splits import load_splits
from condnet.nn import active_blocks
from condnet.train.loop import train

CASES = {  # name: overrides of configs/mnist_condnet.toml
    "tree 4096 = 16 x 256, input": [
        "model.widths=[4096]",
        "model.block_size=[256]",
        'model.router="tree"',
        'model.router_input="input"',
    ],
    "tree 2048 = 32 x 64, pool7": [
        "model.widths=[2048]",
        "model.block_size=[64]",
        'model.router="tree"',
        'model.router_input="pool7"',
    ],
    "top-2 2048 = 16 x 128, pool7": [
        "model.widths=[2048]",
        "model.block_size=[128]",
        'model.router="topk"',
        "model.k=[2]",
        'model.router_input="pool7"',
    ],
    "paper: Bernoulli 256 = 16 x 16": [],
}


def epoch_seconds(overrides: list[str], epochs: int, splits) -> float:
    cfg = load_config("mnist_condnet.toml", [*overrides, f"train.max_epochs={epochs}", "train.patience=100"])
    return train(cfg, splits).train_seconds / epochs


def main() -> None:
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    torch.set_num_threads(1)
    splits = load_splits(load_config("mnist_condnet.toml").data)
    pays = active_blocks.pays
    print("| case | masked dense (s / epoch) | active blocks (s / epoch) | speed-up |\n|---|---|---|---|")
    for name, overrides in CASES.items():
        active_blocks.pays = lambda mask, n_in, size: False
        dense = epoch_seconds(overrides, epochs, splits)
        active_blocks.pays = pays
        sparse = epoch_seconds(overrides, epochs, splits)
        print(f"| {name} | {dense:.1f} | {sparse:.1f} | {dense / sparse:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
