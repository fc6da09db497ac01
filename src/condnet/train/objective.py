"""The learning signals of CondNet (paper section 3, eqs. 2-7).

Which gradient reaches which parameter (the task loss C is the per-example NLL, or with distillation
(1 - w) NLL + w T^2 KL(teacher || student) at temperature T):
- Theta_NN (the W, b of every layer) gets the gradient of C + lambda_L2 ||Theta_NN||^2, by backprop.
- Theta_pi = {Z_l, d_l} gets, per layer, the gradient of lambda_s (L_b + L_e) + lambda_v L_v +
  lambda_L2 ||Theta_pi||^2, and from C, by train.estimator:
  - reinforce (the paper): masks are discrete draws, so C gives no gradient by backprop; the REINFORCE
    estimate of grad E[C] (eq. 4) is added instead (unbiased, high variance);
  - straight_through: C's gradient reaches sigma as if the hard mask were sigma (biased, low variance);
  - gumbel: C's gradient through the relaxed masks (binary concrete), with the temperature annealed from
    train.gumbel_temperature[0] to [1] over the epochs (biased while T > 0; hard masks at test time).
  The policies read the previous layer's activations detached (see CondNet), so none of these terms
  reaches Theta_NN; Theta_NN is trained with the masks it will run with (relaxed, for gumbel).
- A top-k router (model.router = "topk", condnet.nn.router) gets C's gradient through its gate values
  by backprop, plus lambda_balance times the load-balancing loss and lambda_L2 ||Z, d||^2; no REINFORCE
  and no L_b, L_e, L_v (exactly k blocks are on by construction). A tree router likewise, through its
  path probabilities (every leaf's during the soft epochs), plus lambda_harden times path_entropy.
- With model.router_detach = false, the policy terms also reach the previous layers' W, b.

Scale (how lambdas map onto the paper's): with loss_reduction = "sum" (the authors' code) the NLL and the
REINFORCE term are summed over the m examples of the batch; with "mean" both are averaged, which divides
their gradients by m. L_b, L_e and L_v are batch statistics and never scale with m. So a lambda tuned with
"sum" and batch size m equals lambda / m with "mean". The paper's published values (section 4.2) were
used with the authors' summed cost, so enter them as published with loss_reduction = "sum".
"""

from __future__ import annotations

import torch


def log_prob(sigma: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(u | s) of the drawn mask, (batch,): sum_j u_j log sigma_j + (1 - u_j) log(1 - sigma_j)."""
    return (mask * torch.log(sigma) + (1 - mask) * torch.log1p(-sigma)).sum(dim=1)


def reinforce_surrogate(
    sigma: torch.Tensor, mask: torch.Tensor, cost: torch.Tensor, baseline
) -> torch.Tensor:
    """Per-example terms whose gradient is the REINFORCE estimate (eq. 4), (batch,).

    grad_theta sum_i (C_i - b) log pi(u_i | s_i): the mean over i of this gradient is eq. 4's estimator of
    grad_theta E[C]. cost is the per-example NLL; it and the baseline b carry no gradient.
    """
    return (cost.detach() - baseline) * log_prob(sigma, mask)


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-example T^2 KL(softmax(teacher / T) || softmax(student / T)), (batch,): soft targets on the
    logits (Hinton et al. 2015); the T^2 keeps the gradient's scale as T changes. teacher: no gradient."""
    target = torch.log_softmax(teacher.detach() / temperature, dim=1)
    log_student = torch.log_softmax(student / temperature, dim=1)
    return temperature**2 * (target.exp() * (target - log_student)).sum(dim=1)


def load_balance(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A top-k router's load-balancing loss (Switch Transformer): n_blocks * sum_j f_j P_j, where f_j
    is the fraction of the batch's block assignments that went to block j (no gradient) and P_j the
    mean router probability of block j. It is 1 when both are uniform and grows as the router favours
    a few blocks; its gradient reaches the router through P."""
    n_blocks = probs.shape[1]
    assigned = mask.detach() / mask.detach().sum().clamp(min=1)
    return n_blocks * (assigned.sum(dim=0) * probs.mean(dim=0)).sum()


def path_entropy(leaves: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the tree routers' leaf probabilities, (batch, n_leaves) -> scalar: 0 when
    every example's path is certain; the hardening loss weighted by train.lambda_harden."""
    return -(leaves * leaves.clamp_min(1e-12).log()).sum(dim=1).mean()


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


class Baseline:
    """The REINFORCE baseline b (eq. 4), per example:
    - none (the paper): b = 0;
    - batch_min (the authors' code): the batch's least cost;
    - batch_mean: the batch's mean cost. Each example's own cost is in its baseline, so the expected
      gradient is (m-1)/m of the true one for a batch of m (exact enumeration in tests/test_objective.py);
    - leave_one_out: the mean cost of the batch's other examples: independent of the example's own
      mask, so the estimator is unbiased (b = 0 for a batch of one);
    - moving_average: an exponential average of past batches' mean cost, updated after use (unbiased).
    """

    def __init__(self, kind: str = "none", momentum: float = 0.9):
        self.kind, self.momentum, self.average = kind, momentum, None

    def __call__(self, cost: torch.Tensor) -> float | torch.Tensor:
        cost = cost.detach()
        if self.kind == "none":
            return 0.0
        if self.kind == "batch_min":
            return cost.min()
        if self.kind == "batch_mean":
            return cost.mean()
        if self.kind == "leave_one_out":
            m = cost.numel()
            return (cost.sum() - cost) / (m - 1) if m > 1 else torch.zeros_like(cost)
        value = cost.mean() if self.average is None else self.average
        batch = cost.mean()
        self.average = (
            batch if self.average is None else self.momentum * self.average + (1 - self.momentum) * batch
        )
        return value


def squared_norm(params) -> torch.Tensor:
    return sum((p * p).sum() for p in params)
