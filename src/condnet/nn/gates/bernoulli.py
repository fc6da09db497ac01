"""The paper's learned policy (section 3.1): one Bernoulli draw per block.

    sigma = p_min + (p_max - p_min) * sigmoid(Z s + d)      (batch, n_blocks)
    u_j   ~ Bernoulli(sigma_j)  (sample mode; the estimator's draw while training)
    u_j   = [sigma_j > 0.5]     (threshold mode)

The affine squash into [p_min, p_max] is what the authors' code does: it keeps every mask possible (so
log-probabilities stay finite) while still passing gradients at the ends of the range. Its auxiliary
losses are the paper's regularizers, L_b and L_e (eqs. 5, 6, weight lambda_s) and L_v (eq. 7, weight
lambda_v); the task loss reaches it through the estimator (condnet.train.estimators).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from condnet.nn.gates import Gate, LayerTrace, hard_draw, register, xavier_scores


@register
class Bernoulli(Gate):
    name = "bernoulli"

    def __init__(self, spec):
        super().__init__(spec)
        self.Z, self.d = xavier_scores(spec.layer.n_blocks, spec.layer.n_in)
        self.p_min, self.p_max = spec.layer.p_min, spec.layer.p_max

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """sigma: (batch, n_blocks)."""
        return self.p_min + (self.p_max - self.p_min) * torch.sigmoid(F.linear(s, self.Z, self.d))

    def decide(self, s, how, given):
        sigma = self(s)
        if given is not None:
            return LayerTrace(sigma, given)
        if how.mode == "threshold":
            return LayerTrace(sigma, (sigma > 0.5).to(s.dtype))
        noise = torch.rand(sigma.shape, generator=how.generator, dtype=sigma.dtype, device=sigma.device)
        draw = hard_draw if how.draw is None else how.draw.draw
        return LayerTrace(sigma, draw(sigma, noise, how.temperature))

    def add_losses(self, loss, trace, t, lambda_s):
        tau = self.spec.layer.tau
        loss = loss + lambda_s * (block_balance(trace.sigma, tau) + example_balance(trace.sigma, tau))
        return loss + t.lambda_v * variance_reward(trace.sigma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.spec.layer.tau}, p in [{self.p_min}, {self.p_max}]"


def block_balance(sigma: torch.Tensor, tau: float) -> torch.Tensor:
    """L_b (eq. 5) = sum_j | E_x[sigma_j] - tau |: every block is used at rate tau on average."""
    return (sigma.mean(dim=0) - tau).abs().sum()


def example_balance(sigma: torch.Tensor, tau: float) -> torch.Tensor:
    """L_e (eq. 6) = E_x | (1/k) sum_j sigma_j - tau |: every example uses a fraction tau of the blocks."""
    return (sigma.mean(dim=1) - tau).abs().mean()


def variance_reward(sigma: torch.Tensor) -> torch.Tensor:
    """L_v (eq. 7) = - sum_j var_x(sigma_j): rewards policies that differ across examples.

    The variance is the batch's population variance (divided by m), as in the authors' code.
    """
    return -sigma.var(dim=0, unbiased=False).sum()
