"""Per-layer block policies: which blocks of a hidden layer to compute for each example."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BlockPolicy(nn.Module):
    """The learned policy of one hidden layer (paper section 3.1).

    sigma = p_min + (p_max - p_min) * sigmoid(Z s + d)

    s: (batch, n_in), the previous layer's masked activations; returns sigma: (batch, n_blocks).
    The affine squash into [p_min, p_max] is what the authors' code does: it keeps every mask possible
    (so log-probabilities stay finite) while still passing gradients at the ends of the range.
    """

    def __init__(self, n_in: int, n_blocks: int, p_min: float = 0.01, p_max: float = 0.99):
        super().__init__()
        self.Z = nn.Parameter(torch.empty(n_blocks, n_in))
        self.d = nn.Parameter(torch.zeros(n_blocks))
        nn.init.xavier_uniform_(self.Z)
        self.p_min, self.p_max = p_min, p_max

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.p_min + (self.p_max - self.p_min) * torch.sigmoid(F.linear(s, self.Z, self.d))


class UniformPolicy(nn.Module):
    """bdNN's policy: every block is on with probability tau, whatever the input. Nothing is learned."""

    def __init__(self, n_blocks: int, tau: float):
        super().__init__()
        self.n_blocks, self.tau = n_blocks, tau

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s.new_full((s.shape[0], self.n_blocks), self.tau)


class NoPolicy(nn.Module):
    """The place of a dense layer's policy in a gated net (model.gated = false): every block is on."""
