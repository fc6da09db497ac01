"""Top-k routing (model.router = "topk"): exactly k blocks of a layer are computed for each example,
the k with the highest router scores, and their outputs are scaled by gate values, so that the router
learns from the task loss by backprop (as in sparsely-gated mixtures of experts):

    scores = Z s + d                                   (batch, n_blocks)
    on     = the k largest scores per example          (batch, n_blocks) in {0, 1}
    gates  = softmax of the scores over the blocks on  (0 where a block is off; each row sums to 1)
    h      = f(W s + b) * repeat(gates)

Its latency does not depend on the input: every example computes k blocks. The router has the same
parameters (and checkpoint names) as the Bernoulli policy, Z and d.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TopKRouter(nn.Module):
    """Router scores of one hidden layer; s: (batch, n_in) -> scores (batch, n_blocks)."""

    def __init__(self, n_in: int, n_blocks: int, k: int):
        super().__init__()
        self.Z = nn.Parameter(torch.empty(n_blocks, n_in))
        self.d = nn.Parameter(torch.zeros(n_blocks))
        nn.init.xavier_uniform_(self.Z)
        self.k = k

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.linear(s, self.Z, self.d)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1 for the k largest scores of each row, 0 elsewhere (no gradient)."""
    index = scores.detach().topk(k, dim=1).indices
    return torch.zeros_like(scores).scatter_(1, index, 1.0)


def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of the scores over the blocks on (mask 1), 0 elsewhere; a row with no block on is 0."""
    masked = scores.masked_fill(mask == 0, float("-inf"))
    return torch.softmax(masked, dim=1).nan_to_num(0.0)
