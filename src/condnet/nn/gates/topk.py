"""Top-k routing: exactly k blocks of a layer are computed for each example, the k with the highest
router scores, and their outputs are scaled by gate values, so that the router learns from the task
loss by backprop (as in sparsely-gated mixtures of experts):

    scores = Z s + d                                   (batch, n_blocks)
    on     = the k largest scores per example          (batch, n_blocks) in {0, 1}
    gates  = softmax of the scores over the blocks on  (0 where a block is off; each row sums to 1)
    h      = f(W s + b) * repeat(gates)

Its latency does not depend on the input: every example computes k blocks. sigma (for the
load-balancing loss, weight lambda_balance, and the reports) is the softmax over every block.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from condnet.nn.gates import Gate, LayerTrace, load_balance, register, xavier_scores


@register
class TopK(Gate):
    name = "topk"

    def __init__(self, spec):
        super().__init__(spec)
        self.Z, self.d = xavier_scores(spec.layer.n_blocks, spec.layer.n_in)
        self.k = spec.layer.k

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """scores: (batch, n_blocks)."""
        return F.linear(s, self.Z, self.d)

    def decide(self, s, how, given):
        scores = self(s)
        mask = self.choose(scores) if given is None else given
        return LayerTrace(torch.softmax(scores, dim=1), mask, self.gate_values(scores, mask))

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        """The blocks computed (a subclass may choose otherwise while training: balanced_switch)."""
        return top_k_mask(scores, self.k)

    @staticmethod
    def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What each chosen block is scaled by (a subclass may choose otherwise: the switch router)."""
        return gate_values(scores, mask)

    def add_losses(self, loss, trace, t, lambda_s):
        return loss + t.lambda_balance * load_balance(trace.sigma, trace.mask)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1 for the k largest scores of each row, 0 elsewhere (no gradient)."""
    index = scores.detach().topk(k, dim=1).indices
    return torch.zeros_like(scores).scatter_(1, index, 1.0)


def gate_values(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of the scores over the blocks on (mask 1), 0 elsewhere; a row with no block on is 0."""
    masked = scores.masked_fill(mask == 0, float("-inf"))
    return torch.softmax(masked, dim=1).nan_to_num(0.0)
