"""How the task loss C reaches a learned policy whose masks are discrete draws (train.estimator).

Each estimator forms the sample-mode masks while training (`draw`, called by the Bernoulli gate, the
only gate that draws and learns) and adds its part of the loss (`surrogate`). Which gradient reaches
which parameter:
- reinforce (the paper, eq. 4): hard masks, no gradient through them; C's gradient reaches {Z, d} only
  through the REINFORCE surrogate (C_i - b) log pi(u_i | s_i) (unbiased, high variance).
- straight_through: the same hard masks forward; backward, C's gradient reaches sigma as if the mask
  were sigma (biased, low variance). No surrogate.
- gumbel: relaxed masks, the binary concrete sigmoid((logit sigma + logit U) / T), in (0, 1), through
  which C's gradient reaches sigma (biased while T > 0; annealed by train.gumbel_temperature). Theta_NN
  is trained with the relaxed masks; the test uses hard ones. No surrogate.
Routers (top-k, tree, ...) decide deterministically and learn through their gate values by backprop:
no estimator is involved. The network's weights are trained by backprop in every case.
"""

from __future__ import annotations

import torch

from condnet.nn.gates import hard_draw
from condnet.train.objective import reinforce_surrogate


class Reinforce:
    name = "reinforce"
    uses_baseline = True
    draw = staticmethod(hard_draw)

    @staticmethod
    def surrogate(trace, cost: torch.Tensor, baseline) -> torch.Tensor | None:
        """Per-example terms whose gradient is eq. 4's estimate of grad E[C], (batch,)."""
        return reinforce_surrogate(trace.sigma, trace.mask, cost, baseline)


class StraightThrough:
    name = "straight_through"
    uses_baseline = False

    @staticmethod
    def draw(sigma, noise, temperature):
        # forward: exactly the hard draw (sigma - sigma is exactly 0); backward: d mask / d sigma = 1
        return hard_draw(sigma, noise, temperature) + (sigma - sigma.detach())

    @staticmethod
    def surrogate(trace, cost, baseline):
        return None


class Gumbel:
    name = "gumbel"
    uses_baseline = False

    @staticmethod
    def draw(sigma, noise, temperature):
        # binary concrete: sigmoid((logit sigma + logit U) / T), a relaxed Bernoulli(sigma) draw that
        # tends to the hard one as T -> 0 (the clamp keeps logit U finite)
        noise = noise.clamp(1e-6, 1 - 1e-6)
        return torch.sigmoid((torch.logit(sigma) + torch.logit(noise)) / temperature)

    @staticmethod
    def surrogate(trace, cost, baseline):
        return None


ESTIMATORS = {cls.name: cls for cls in (Reinforce, StraightThrough, Gumbel)}
