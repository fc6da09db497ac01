"""The learning signals against independent references: exact enumeration and hand-computed values."""

from __future__ import annotations

import itertools

import pytest
import torch

from condnet.gates import LayerSettings, gate_class
from condnet.nn.gates import make_gate
from condnet.nn.gates.bernoulli import block_balance, example_balance, variance_reward
from condnet.train.objective import Baseline, add_l2_gradient, log_prob, reinforce_surrogate


def BlockPolicy(n_in, n_blocks, p_min, p_max):  # noqa: N802 (the paper's policy, as a module)
    return make_gate(gate_class("bernoulli")(LayerSettings(0, n_in, n_blocks, 1, 1, 0.5, p_min, p_max)))


SIGMA = torch.tensor([[0.2, 0.5, 0.9], [0.4, 0.1, 0.7]])


def test_block_balance_by_hand():
    # block means 0.3, 0.3, 0.8; tau 0.25 -> |0.05| + |0.05| + |0.55| = 0.65
    assert block_balance(SIGMA, 0.25).item() == pytest.approx(0.65)


def test_example_balance_by_hand():
    # example means 1.6/3 and 1.2/3; tau 0.25 -> mean(|0.5333 - 0.25|, |0.4 - 0.25|) = (0.28333 + 0.15) / 2
    assert example_balance(SIGMA, 0.25).item() == pytest.approx((1.6 / 3 - 0.25 + 0.15) / 2)


def test_variance_reward_by_hand():
    # population variances per block: 0.01, 0.04, 0.01 -> L_v = -0.06
    assert variance_reward(SIGMA).item() == pytest.approx(-0.06)


def test_log_prob_by_hand():
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.log(torch.tensor(0.2)) + torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.9))
    assert log_prob(SIGMA[:1], mask).item() == pytest.approx(expected.item())


def test_baselines():
    cost = torch.tensor([3.0, 1.0, 2.0])
    assert Baseline("none")(cost) == 0.0
    assert Baseline("batch_min")(cost).item() == 1.0
    assert Baseline("batch_mean")(cost).item() == 2.0
    assert Baseline("leave_one_out")(cost).tolist() == [1.5, 2.5, 2.0]
    assert Baseline("leave_one_out")(cost[:1]).tolist() == [0.0]
    moving = Baseline("moving_average", momentum=0.5)
    assert moving(cost).item() == 2.0  # first batch: its own mean
    assert moving(torch.tensor([4.0, 4.0])).item() == 2.0  # then the average of past batches
    assert moving(torch.tensor([0.0])).item() == pytest.approx(3.0)  # 0.5 * 2 + 0.5 * 4


@pytest.mark.parametrize("baseline", ["none", "batch_mean"])
def test_reinforce_estimator_is_unbiased(baseline):
    """For a 4-block policy on a fixed input, with a fixed cost per mask, the exact gradient of
    E[C] = sum_u pi(u) C(u) (enumerating all 16 masks) matches the mean of the estimator over many draws.

    With batch_mean the baseline depends on the batch, so the estimator is biased by a factor (m-1)/m
    of the policy term; we correct for that by comparing with the matching scaled expectation.
    """
    torch.manual_seed(0)
    n_in, k = 3, 4
    policy = BlockPolicy(n_in, k, p_min=0.01, p_max=0.99)
    with torch.no_grad():
        policy.d.copy_(torch.tensor([0.5, -1.0, 1.5, 0.0]))
    s = torch.tensor([[0.3, -0.7, 1.2]])
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)))
    cost_table = torch.rand(len(masks)) * 3 + 1  # C(u) > 0, fixed per mask

    def cost_of(mask):  # (m, k) -> (m,)
        index = (mask * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(dim=1).long()
        return cost_table[index]

    # exact: grad of sum_u pi(u) C(u)
    sigma = policy(s.expand(len(masks), -1))
    expected_cost = (torch.exp(log_prob(sigma, masks)) * cost_table).sum()
    exact = torch.autograd.grad(expected_cost, [policy.Z, policy.d])

    draws, m = 4000, 8  # 4000 batches of 8 examples with the same input
    sigma = policy(s.expand(draws * m, -1))
    sample = (torch.rand(sigma.shape, generator=torch.Generator().manual_seed(1)) < sigma.detach()).float()
    cost = cost_of(sample).view(draws, m)
    b = Baseline(baseline)
    baselines = torch.stack([torch.as_tensor(b(c), dtype=torch.float32) for c in cost]).view(draws, 1)
    terms = reinforce_surrogate(sigma, sample, cost.flatten(), baselines.expand(draws, m).flatten())
    estimate = torch.autograd.grad(terms.mean(), [policy.Z, policy.d], retain_graph=True)

    factor = (m - 1) / m if baseline == "batch_mean" else 1.0
    # per-draw spread of the estimator, for a tolerance of 5 standard errors
    per_example = []
    for i in range(0, draws * m, 997):
        g = torch.autograd.grad(terms[i], [policy.d], retain_graph=True)[0]
        per_example.append(g)
    spread = torch.stack(per_example).std(dim=0)
    tolerance = 5 * spread / (draws * m) ** 0.5
    assert torch.all((estimate[1] - factor * exact[1]).abs() <= tolerance + 1e-4), (estimate[1], exact[1])
    scale = s.abs().max()
    assert torch.allclose(estimate[0], factor * exact[0], atol=(tolerance.max() * scale).item() + 1e-4)
    # and the test can fail: a wrong sign or a missing factor is far outside the tolerance
    assert not torch.all((-estimate[1] - factor * exact[1]).abs() <= tolerance)


@pytest.mark.parametrize("baseline, factor", [("none", 1.0), ("leave_one_out", 1.0), ("batch_mean", 2 / 3)])
def test_expected_estimator_by_exact_enumeration_of_a_batch(baseline, factor):
    """A batch of m = 3 examples, 2 blocks each: every one of the 2^6 joint masks enumerated, so the
    estimator's expectation is exact (no sampling). It equals the true gradient for none and
    leave_one_out, and (m-1)/m of it for batch_mean."""
    torch.manual_seed(0)
    policy = BlockPolicy(3, 2, p_min=0.01, p_max=0.99)
    s = torch.tensor([[0.3, -0.7, 1.2], [1.0, 0.2, -0.5], [-0.4, 0.9, 0.1]])
    cost_table = torch.rand(3, 4) * 3 + 1  # C_i(u_i) > 0, per example i and its mask u_i (4 masks)

    def cost_of(masks):  # (3, 2) -> (3,)
        return cost_table[torch.arange(3), (2 * masks[:, 0] + masks[:, 1]).long()]

    sigma = policy(s)
    singles = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)))
    true_cost = sum(
        (torch.exp(log_prob(sigma[i].expand(4, 2), singles)) * cost_table[i]).sum() for i in range(3)
    )
    true = torch.autograd.grad(true_cost, [policy.Z, policy.d], retain_graph=True)

    expected = [torch.zeros_like(policy.Z), torch.zeros_like(policy.d)]
    for joint in itertools.product(singles, repeat=3):
        masks = torch.stack(joint)
        p = torch.exp(log_prob(sigma, masks).sum()).detach()
        cost = cost_of(masks)
        terms = reinforce_surrogate(sigma, masks, cost, Baseline(baseline)(cost))
        grads = torch.autograd.grad(terms.sum(), [policy.Z, policy.d], retain_graph=True)
        for total, g in zip(expected, grads, strict=True):
            total += p * g
    for e, t in zip(expected, true, strict=True):
        torch.testing.assert_close(e, factor * t, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(e, (1.5 - factor) * t, rtol=1e-2)  # the factor is told apart


@pytest.mark.parametrize(
    "kind, router, view",
    [
        ("condnet", "topk", "proj16"),
        ("condnet", "tree", "input"),
        ("condnet", "hash", "proj16"),
        ("nn", "bernoulli", "layer"),
    ],
)
def test_the_l2_gradient_equals_the_term_in_the_loss(kind, router, view):
    """The step's gradients (training_loss, backward, add_l2_gradient) against autograd on the loss plus
    lambda ||p||^2 written out over the penalised parameters by hand: W, b of every layer, a learned
    router's parameters and the projection it reads (a hash router's and its projection: not penalised)."""
    from condnet.config import Config, ModelConfig, TrainConfig, validate
    from condnet.nn.condnet import CondNet
    from condnet.train.loop import l2_parameters, training_loss

    torch.manual_seed(0)
    model_cfg = ModelConfig(kind=kind, widths=[64, 32], block_size=[16, 8], router=router, k=[1, 1],
                            gated=[True, True], router_input=view, activation="relu")  # fmt: skip
    cfg = validate(Config(model=model_cfg, train=TrainConfig(lambda_l2=0.01, lambda_balance=0.1)))
    model = CondNet(20, 3, cfg.model)
    x, y = torch.randn(12, 20), torch.randint(0, 3, (12,))
    learned = router != "hash" and kind == "condnet"
    by_hand = [*model.hidden.parameters(), *model.output.parameters()]
    if learned:
        by_hand += [*model.policies.parameters()]
        by_hand += [*model.router_projection.parameters()] if view == "proj16" else []
    assert {id(p) for p in l2_parameters(model)} == {id(p) for p in by_hand}

    def step(l2_in_the_loss: bool) -> dict:
        model.zero_grad(set_to_none=True)
        out = model(x, "threshold")
        loss, _ = training_loss(model, out, y, cfg, Baseline())
        if l2_in_the_loss:
            (loss + 0.01 * sum((p * p).sum() for p in by_hand)).backward()
        else:
            loss.backward()
            add_l2_gradient(l2_parameters(model), 0.01)
        return {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}

    want, got = step(True), step(False)
    assert want.keys() == got.keys()
    for name in want:
        assert (want[name] is None) == (got[name] is None), name
        if want[name] is not None:
            torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-8, msg=name)
