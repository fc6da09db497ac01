"""Where a routed layer's accuracy goes, measured on the VALIDATION split of finished top-k and tree
runs whose last hidden layer is the routed one:

- learned: the error with the router's own choice;
- random: the same number of blocks per example chosen uniformly at random (the router's value);
- oracle (one block per example only): for each example the block with the lowest loss, found by
  trying every block; the best any router could do with these blocks (the blocks' own limit);
- load: the share of validation examples each block gets (min and max, and the entropy of the shares
  over log2 of the number of blocks: 1 = perfectly even), and so how the data is split between blocks.

    .venv/bin/python docs/routing_account.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import math
import sys

import torch
from torch.nn import functional as F

from condnet.experiment import load_run


def forced(model, x, last_mask):
    """Logits with the routed (last hidden) layer's blocks given; earlier layers as the model decides."""
    out = model(x, mode="threshold")
    masks = [t.mask for t in out.layers[:-1]] + [last_mask]
    return model(x, mode="threshold", masks=masks).logits


@torch.no_grad()
def account(run_dir: str) -> str:
    cfg, model, splits = load_run(run_dir)
    x, y = splits.x_valid, splits.y_valid
    out = model(x, mode="threshold")
    learned = out.layers[-1].mask
    n_blocks, k = learned.shape[1], int(learned[0].sum().item())
    error = lambda logits: 100 * (logits.argmax(1) != y).float().mean().item()  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    picks = torch.rand(len(x), n_blocks, generator=generator).argsort(dim=1)[:, :k]
    random = torch.zeros_like(learned).scatter_(1, picks, 1.0)
    oracle = "n/a (k > 1)"
    if k == 1:
        losses = torch.stack([F.cross_entropy(forced(model, x, F.one_hot(torch.full((len(x),), b), n_blocks)
                                                     .to(x.dtype)), y, reduction="none")
                              for b in range(n_blocks)], dim=1)  # fmt: skip
        best = F.one_hot(losses.argmin(dim=1), n_blocks).to(x.dtype)
        oracle = f"{error(forced(model, x, best)):.2f}"
    share = learned.sum(dim=0) / learned.sum()
    entropy = -(share[share > 0] * share[share > 0].log2()).sum().item() / math.log2(n_blocks)
    return (f"| {run_dir} | {cfg.model.router} | {k} of {n_blocks} | {error(out.logits):.2f} | "
            f"{error(forced(model, x, random)):.2f} | {oracle} | {100 * share.min().item():.1f} - "
            f"{100 * share.max().item():.1f} | {entropy:.3f} |")  # fmt: skip


if __name__ == "__main__":
    print("| run | router | blocks on | learned % | random % | oracle % | block shares % (min - max) | "
          "share entropy / log2(blocks) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for run in sys.argv[1:]:
        print(account(run))
