"""Evaluation of a model on a split: loss, error, activation rates, MACs and policy statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from condnet.nn.condnet import CondNet


@dataclass
class Evaluation:
    loss: float  # mean NLL
    error: float  # fraction misclassified
    activation_rate: list[float]  # per hidden layer: fraction of blocks on
    entropy: list[float]  # per hidden layer: mean Bernoulli entropy of sigma, in bits (0 for the dense NN)
    macs: float  # mean multiply-adds per example, policies included
    sigmas: list[torch.Tensor | None]  # per hidden layer: (n, n_blocks), None for the dense NN


def bernoulli_entropy_bits(sigma: torch.Tensor) -> torch.Tensor:
    # xlogy: 0 log 0 = 0, so a certain gate (sigma 0 or 1: hash, a hardened tree) has 0 bits, not NaN
    nats = torch.special.xlogy(sigma, sigma) + torch.special.xlogy(1 - sigma, 1 - sigma)
    return -nats / math.log(2)


@torch.no_grad()
def evaluate(
    model: CondNet, x: torch.Tensor, y: torch.Tensor, mode: str, batch_size: int = 500, seed: int = 0
) -> Evaluation:
    """Evaluate in `mode` ("sample" or "threshold"); sample mode draws from a generator seeded with `seed`,
    batch by batch in order, so the same seed and batch size give the same masks."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    n_layers = len(model.hidden)
    nll = errors = macs = 0.0
    on = [0.0] * n_layers
    entropy = [0.0] * n_layers
    sigmas: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        out = model(xb, mode=mode, generator=generator)
        nll += F.cross_entropy(out.logits, yb, reduction="sum").item()
        errors += (out.logits.argmax(dim=1) != yb).sum().item()
        masks = [t.mask for t in out.layers]
        macs += model.macs(masks).sum().item()
        for i, t in enumerate(out.layers):
            on[i] += t.mask.mean(dim=1).sum().item()
            if t.sigma is not None:
                entropy[i] += bernoulli_entropy_bits(t.sigma).mean(dim=1).sum().item()
                sigmas[i].append(t.sigma)
    model.train(was_training)
    n = len(x)
    return Evaluation(
        loss=nll / n,
        error=errors / n,
        activation_rate=[v / n for v in on],
        entropy=[v / n for v in entropy],
        macs=macs / n,
        sigmas=[torch.cat(s) if s else None for s in sigmas],
    )


def class_specificity(sigma: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the L1 distance between a class's mean sigma vector and the overall mean.

    0 for a policy that ignores its input (bdNN); larger when blocks specialise to classes.
    """
    overall = sigma.mean(dim=0)
    classes = labels.unique()
    return (
        torch.stack([(sigma[labels == c].mean(dim=0) - overall).abs().sum() for c in classes]).mean().item()
    )
