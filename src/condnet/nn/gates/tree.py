"""Tree routing: a binary tree of decision units over the n = 2^D blocks (the leaves), node i scoring
z_i . s + d_i (Z: (n - 1, n_in), nodes in level order, children of node i at 2i + 1 and 2i + 2). Each
example follows one path, right where the score is > 0, and computes the block at its end, scaled by
the path's probability (the product of sigmoid(score) going right and 1 - sigmoid(score) going left),
so every node on the path learns by backprop. The router costs D dot products, not n.

While training (how.soft: the first train.tree_soft_epochs epochs) every leaf is computed, scaled by
its path probability (a soft mixture). Auxiliary losses: load balancing (lambda_balance) and the
entropy of the leaf probabilities (lambda_harden), which pushes the decisions to be firm.
sigma (in the trace) is every leaf's path probability.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from condnet.nn.gates import Gate, LayerTrace, load_balance, register, xavier_scores


@register
class Tree(Gate):
    name = "tree"

    def __init__(self, spec):
        super().__init__(spec)
        self.depth = spec.depth
        self.Z, self.d = xavier_scores(spec.layer.n_blocks - 1, spec.layer.n_in)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Node scores: (batch, n_blocks - 1)."""
        return F.linear(s, self.Z, self.d)

    def decide(self, s, how, given):
        scores = self(s)
        leaves = leaf_probabilities(scores)
        if how.soft and given is None:  # training's soft mixture: every leaf, by its probability
            return LayerTrace(leaves, torch.ones_like(leaves), leaves)
        mask = tree_path_mask(scores) if given is None else given
        return LayerTrace(leaves, mask, leaves * mask)

    def add_losses(self, loss, trace, t, lambda_s):
        loss = loss + t.lambda_balance * load_balance(trace.sigma, trace.mask)
        if t.lambda_harden > 0:
            loss = loss + t.lambda_harden * path_entropy(trace.sigma)
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, depth={self.depth}"


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


def path_entropy(leaves: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the leaf probabilities, (batch, n_leaves) -> scalar: 0 when every
    example's path is certain; the hardening loss weighted by train.lambda_harden."""
    return -(leaves * leaves.clamp_min(1e-12).log()).sum(dim=1).mean()
