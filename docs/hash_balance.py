"""How evenly a hash router spreads examples over its blocks before any training (a hash's routing never
changes): for a config and seeds, the load entropy over the blocks, the share of examples that use the
busiest block, and that block's share of all assignments, on the validation split (threshold mode).
Balanced hashes are fitted as training fits them (condnet.train.loop.fit_gates).
Usage: python docs/hash_balance.py CONFIG.toml SEED... [--set KEY=VALUE ...]"""

import sys

import numpy as np
import torch

from condnet.config import load_config
from condnet.data import load_splits
from condnet.nn.condnet import CondNet
from condnet.train.loop import fit_gates

args = sys.argv[1:]
overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
config, seeds = args[0], [int(a) for a in args[1:] if a.isdigit()]
cfg = load_config(config, overrides)
splits = load_splits(cfg.data)
for seed in seeds:
    torch.manual_seed(seed)
    model = CondNet(splits.input_dim, splits.n_classes, cfg.model)
    fit_gates(model, splits.x_train, seed)
    with torch.no_grad():
        mask = model(splits.x_valid, mode="threshold").layers[0].mask.numpy()
    share = mask.sum(axis=0) / mask.sum()
    entropy = -(share[share > 0] * np.log2(share[share > 0])).sum()
    print(f"{cfg.model.router} seed {seed}: load entropy {entropy:.2f} of {np.log2(len(share)):.0f} bits, "
          f"busiest block used by {100 * mask.mean(axis=0).max():.1f} % of examples, "
          f"{100 * share.max():.1f} % of assignments")  # fmt: skip
