"""The learning signals of CondNet (paper section 3, eqs. 2-7).

Which gradient reaches which parameter (the task loss C is the per-example NLL, or with distillation
(1 - w) NLL + w T^2 KL(teacher || student) at temperature T):
- Theta_NN (the W, b of every layer) gets the gradient of C by backprop, and that of lambda_L2
  ||Theta_NN||^2 added after it (add_l2_gradient: the same gradient, without building the term).
- Each gate's parameters (Theta_pi, condnet.nn.gates) get the gradient of the gate's own auxiliary losses
  (the Bernoulli policy: lambda_s (L_b + L_e) + lambda_v L_v; routers: lambda_balance times the
  load-balancing loss, a tree also lambda_harden times its path entropy) + lambda_L2 ||Theta_pi||^2,
  and C's gradient: a Bernoulli policy's through the estimator (condnet.train.estimators: REINFORCE's
  surrogate below, straight-through or Gumbel), a router's through its gate values by backprop.
  The policies read the previous layer's activations detached (see CondNet), so none of these terms
  reaches Theta_NN unless model.router_detach = false.

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


def add_l2_gradient(params, lambda_l2: float) -> None:
    """Add the gradient of lambda_L2 ||p||^2, 2 lambda_L2 p, to each parameter's gradient (made when the
    loss gave it none, as the term in the loss would). The same gradient as that term, without building
    it: the term cost five passes over every weight per batch (W * W, its sum, two products and an
    addition backward), each with its allocation: a third of a 2048-unit input layer's step (RESULTS 8.10)."""
    if lambda_l2 == 0:
        return
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                p.grad = p * (2 * lambda_l2)
            else:
                p.grad.add_(p, alpha=2 * lambda_l2)
