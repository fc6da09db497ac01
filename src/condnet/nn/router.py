"""Routers that compute a fixed number of blocks per example, scaled by gate values.

Top-k routing (model.router = "topk"): exactly k blocks of a layer are computed for each example,
the k with the highest router scores, and their outputs are scaled by gate values, so that the router
learns from the task loss by backprop (as in sparsely-gated mixtures of experts):

    scores = Z s + d                                   (batch, n_blocks)
    on     = the k largest scores per example          (batch, n_blocks) in {0, 1}
    gates  = softmax of the scores over the blocks on  (0 where a block is off; each row sums to 1)
    h      = f(W s + b) * repeat(gates)

Its latency does not depend on the input: every example computes k blocks. The router has the same
parameters (and checkpoint names) as the Bernoulli policy, Z and d.

Tree routing (model.router = "tree"): a binary tree of decision units over the n = 2^D blocks (the
leaves), node i scoring z_i . s + d_i (Z: (n - 1, n_in), nodes in level order, children of node i at
2i + 1 and 2i + 2). Each example follows one path, right where the score is > 0, and computes the
block at its end, scaled by the path's probability (the product of sigmoid(score) going right and
1 - sigmoid(score) going left), so every node on the path learns by backprop. The router costs D dot
products, not n: its cost grows with the depth.
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


class TreeRouter(nn.Module):
    """Node scores of one hidden layer's tree; s: (batch, n_in) -> scores (batch, n_blocks - 1)."""

    def __init__(self, n_in: int, n_blocks: int):
        super().__init__()
        self.depth = n_blocks.bit_length() - 1
        self.Z = nn.Parameter(torch.empty(n_blocks - 1, n_in))
        self.d = nn.Parameter(torch.zeros(n_blocks - 1))
        nn.init.xavier_uniform_(self.Z)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return F.linear(s, self.Z, self.d)


def leaf_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """(batch, n_blocks - 1) node scores -> (batch, n_blocks): each leaf's path probability."""
    probs = scores.new_ones(scores.shape[0], 1)
    level = 0
    while probs.shape[1] < scores.shape[1] + 1:
        width = probs.shape[1]
        right = torch.sigmoid(scores[:, level : level + width])
        probs = torch.stack([probs * (1 - right), probs * right], dim=2).reshape(len(probs), 2 * width)
        level += width
    return probs


def tree_path_mask(scores: torch.Tensor) -> torch.Tensor:
    """1 for the leaf each example's path ends at (right where the node score is > 0), 0 elsewhere."""
    batch, n_nodes = scores.shape
    position = torch.zeros(batch, dtype=torch.long)
    level = 0
    while level < n_nodes:  # level starts at 2^t - 1 and holds 2^t nodes
        right = (scores.detach()[torch.arange(batch), level + position] > 0).long()
        position = 2 * position + right
        level = 2 * level + 1
    return torch.zeros(batch, n_nodes + 1, dtype=scores.dtype).scatter_(1, position[:, None], 1.0)
