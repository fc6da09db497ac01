"""How often a gated layer computes nothing: per run, the fraction of VALIDATION examples whose last
hidden layer has no block on, and the error on them and on the others (sample and threshold mode).

    .venv/bin/python docs/empty_blocks.py RUN_DIR [RUN_DIR ...]
"""

import sys

import torch

from condnet.experiment import load_run

for run in sys.argv[1:]:
    cfg, model, splits = load_run(run)
    generator = torch.Generator().manual_seed(cfg.seed)
    for mode in ("sample", "threshold"):
        with torch.no_grad():
            out = model(splits.x_valid, mode, generator)
        on = out.layers[-1].mask.sum(dim=1)
        wrong = (out.logits.argmax(dim=1) != splits.y_valid).float()
        empty = on == 0
        print(
            f"| {run} | {mode} | {on.mean():.2f} | {100 * empty.float().mean():.1f} | "
            f"{100 * wrong[empty].mean():.1f} | {100 * wrong[~empty].mean():.2f} | {100 * wrong.mean():.2f} |"
        )
