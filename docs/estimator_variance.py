"""How noisy each gate estimator's gradient is, measured on a trained Bernoulli-gated run: the gradient
of the task cost (mean NLL of one training minibatch) with respect to the gated layer's policy {Z, d},
over DRAWS independent mask draws of the same minibatch and model.

The reference gradient is the mean of REFERENCE_DRAWS REINFORCE estimates with the leave-one-out
baseline (unbiased; condnet.train.objective). Per estimator: the signal-to-noise ratio of ONE estimate,
||mean|| / sqrt(E ||g - mean||^2), and the cosine between its mean and the reference (1: unbiased in
direction; straight-through and Gumbel are biased by design).

    .venv/bin/python docs/estimator_variance.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys

import torch
from torch.nn import functional as F

from condnet.experiment import load_run
from condnet.train.objective import log_prob

DRAWS, REFERENCE_DRAWS, BATCH = 200, 2000, 128


def gradient(model, x, y, generator, estimator, temperature=1.0, baseline="none"):
    """One estimate of d E[mean NLL] / d {Z, d} of the last gated layer, flattened."""
    layer = max(i for i in range(len(model.hidden)) if model.policy(i) is not None)
    params = model.policy_parameters(layer)
    out = model(x, "sample", generator, estimator=estimator, temperature=temperature)
    nll = F.cross_entropy(out.logits, y, reduction="none")
    if estimator == "reinforce":
        trace = out.layers[layer]
        cost = nll.detach()
        b = (cost.sum() - cost) / (len(cost) - 1) if baseline == "leave_one_out" else 0.0
        loss = ((cost - b) * log_prob(trace.sigma, trace.mask)).mean()
    else:
        loss = nll.mean()
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads])


def stats(samples: torch.Tensor, reference: torch.Tensor) -> str:
    mean = samples.mean(dim=0)
    noise = (samples - mean).pow(2).sum(dim=1).mean().sqrt()
    cosine = F.cosine_similarity(mean, reference, dim=0).item()
    return f"{(mean.norm() / noise).item():.3f} | {cosine:+.3f}"


def main(run_dir: str) -> None:
    cfg, model, splits = load_run(run_dir)
    model.train()
    generator = torch.Generator().manual_seed(0)
    x, y = splits.x_train[:BATCH], splits.y_train[:BATCH]
    reference = torch.stack(
        [
            gradient(model, x, y, generator, "reinforce", baseline="leave_one_out")
            for _ in range(REFERENCE_DRAWS)
        ]
    ).mean(dim=0)
    cases = {"reinforce, no baseline": ("reinforce", 1.0, "none"),
             "reinforce, leave-one-out": ("reinforce", 1.0, "leave_one_out"),
             "straight_through": ("straight_through", 1.0, "none"),
             "gumbel, T = 1": ("gumbel", 1.0, "none"),
             "gumbel, T = 0.1": ("gumbel", 0.1, "none")}  # fmt: skip
    for name, (estimator, temperature, baseline) in cases.items():
        samples = torch.stack([gradient(model, x, y, generator, estimator, temperature, baseline)
                               for _ in range(DRAWS)])  # fmt: skip
        print(f"| {run_dir} | {name} | {stats(samples, reference)} |")


if __name__ == "__main__":
    print("| run | estimator | SNR of one estimate | cosine(mean, reference) |")
    print("|---|---|---|---|")
    for run in sys.argv[1:]:
        main(run)
