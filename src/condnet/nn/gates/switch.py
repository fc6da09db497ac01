"""Switch routing: top-k's choice (the k blocks of largest scores), each block scaled by its probability
among all the blocks (the Switch Transformer's router), not renormalised over the k chosen:

    scores = Z s + d                                   (batch, n_blocks)
    on     = the k largest scores per example          (batch, n_blocks) in {0, 1}
    gates  = softmax of the scores over every block, where on (0 where off; rows sum to at most 1)
    h      = f(W s + b) * repeat(gates)

With k = 1 top-k's gate value is 1 whatever the scores, so the task's gradient never reaches its
router (only the balance loss trains it); here it is the chosen block's probability, which the task
moves. sigma (the balance loss, the reports) is the same softmax.

Balanced switch routing (model.router = "balanced_switch") is the same router at inference (the engine
runs it as switch); while training, each batch's blocks are chosen by top-k of the scores balanced
across the batch (Sinkhorn's iteration, as in S-BASE routing: every block gets about the same share of
the batch), so that the router cannot collapse onto one block, yet still learns from the task through
the same gate values.
"""

from __future__ import annotations

import torch

from condnet.nn.gates import register
from condnet.nn.gates.topk import TopK, top_k_mask

SINKHORN_STEPS = 30  # balancing iterations per training batch (a batch x blocks matrix each: cheap)


@register
class Switch(TopK):
    name = "switch"

    @staticmethod
    def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return gate_values(scores, mask)


def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The softmax of the scores over every block, 0 where the mask is 0."""
    return torch.softmax(scores, dim=1) * mask


@register
class BalancedSwitch(Switch):
    name = "balanced_switch"

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.training or len(scores) == 1:  # inference (the engine's choice), or nothing to share
            return super().choose(scores)
        return top_k_mask(balanced(scores), self.k).to(scores.dtype)


def balanced(scores: torch.Tensor, steps: int = SINKHORN_STEPS) -> torch.Tensor:
    """The log of diag(a) exp(scores) diag(b), a and b such that its columns (blocks) have equal sums
    and its rows (examples) sum to 1 (Sinkhorn's alternating normalisation, in the log domain; no
    gradient): a row's largest entries are the blocks it prefers most relative to the rest of the batch."""
    log = scores.detach().double()
    for _ in range(steps):
        log = log - torch.logsumexp(log, dim=0, keepdim=True)
        log = log - torch.logsumexp(log, dim=1, keepdim=True)
    return log
