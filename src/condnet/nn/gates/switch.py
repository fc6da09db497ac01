"""Switch routing: top-k's choice (the k blocks of largest scores), each block scaled by its probability
among all the blocks (the Switch Transformer's router), not renormalised over the k chosen:

    scores = Z s + d                                   (batch, n_blocks)
    on     = the k largest scores per example          (batch, n_blocks) in {0, 1}
    gates  = softmax of the scores over every block, where on (0 where off; rows sum to at most 1)
    h      = f(W s + b) * repeat(gates)

With k = 1 top-k's gate value is 1 whatever the scores, so the task's gradient never reaches its
router (only the balance loss trains it); here it is the chosen block's probability, which the task
moves. sigma (the balance loss, the reports) is the same softmax.
"""

from __future__ import annotations

import torch

from condnet.nn.gates import register
from condnet.nn.gates.topk import TopK


@register
class Switch(TopK):
    name = "switch"

    @staticmethod
    def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return gate_values(scores, mask)


def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The softmax of the scores over every block, 0 where the mask is 0."""
    return torch.softmax(scores, dim=1) * mask
