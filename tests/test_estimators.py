"""Gate estimators and distillation against independent references: a hand-written masked network,
finite differences and hand-computed values; then short runs on the fixture data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from condnet.cli import main
from condnet.config import Config, ModelConfig, validate
from condnet.data.splits import load_idx_splits
from condnet.nn.condnet import CondNet
from condnet.train.estimators import ESTIMATORS
from condnet.train.evaluate import evaluate
from condnet.train.loop import gumbel_temperature, train
from condnet.train.objective import distillation
from test_training import SMALL, small_config


def tiny_model() -> CondNet:
    torch.manual_seed(3)
    cfg = validate(Config(model=ModelConfig(widths=[6], block_size=[2], p_min=0.05, p_max=0.95)))
    model = CondNet(4, 3, cfg.model).double()
    with torch.no_grad():
        model.policies[0].d.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    return model


X = torch.tensor([[0.2, -1.0, 0.5, 0.9], [1.1, 0.3, -0.4, 0.0], [-0.6, 0.8, 0.2, -0.3]], dtype=torch.float64)
Y = torch.tensor([0, 2, 1])


def loss_of(model, estimator, temperature=1.0, seed=5):
    draw = ESTIMATORS[estimator]
    out = model(X, "sample", torch.Generator().manual_seed(seed), estimator=draw, temperature=temperature)
    return F.cross_entropy(out.logits, Y, reduction="sum"), out


def test_straight_through_gradient_by_hand():
    """d loss / d sigma = d loss / d mask (the mask taken as a variable in a hand-written masked
    network); then sigma = p_min + (p_max - p_min) sigmoid(Z s + d) by the chain rule."""
    model = tiny_model()
    loss, out = loss_of(model, "straight_through")
    grad_z, grad_d = torch.autograd.grad(loss, [model.policies[0].Z, model.policies[0].d])

    hidden, output, policy = model.hidden[0], model.output, model.policies[0]
    mask = out.layers[0].mask.detach().clone().requires_grad_(True)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}  # the forward used hard masks
    h = torch.tanh(X @ hidden.weight.T + hidden.bias) * mask.repeat_interleave(2, dim=1)
    reference = F.cross_entropy(h @ output.weight.T + output.bias, Y, reduction="sum")
    (d_mask,) = torch.autograd.grad(reference, [mask])
    s = torch.sigmoid(X @ policy.Z.T + policy.d).detach()
    d_pre = d_mask * (0.95 - 0.05) * s * (1 - s)
    torch.testing.assert_close(grad_d, d_pre.sum(dim=0))
    torch.testing.assert_close(grad_z, d_pre.T @ X)
    assert grad_d.abs().sum() > 0


def test_reinforce_and_straight_through_draw_the_same_hard_masks():
    model = tiny_model()
    (_, a), (_, b) = loss_of(model, "reinforce"), loss_of(model, "straight_through")
    assert torch.equal(a.logits, b.logits) and torch.equal(a.layers[0].mask, b.layers[0].mask)
    assert a.layers[0].mask.grad_fn is None  # REINFORCE's masks carry no gradient


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_gumbel_gradient_matches_finite_differences(temperature):
    model = tiny_model()
    d = model.policies[0].d
    loss, out = loss_of(model, "gumbel", temperature)
    (grad,) = torch.autograd.grad(loss, [d])
    mask = out.layers[0].mask
    assert ((mask > 0) & (mask < 1)).all()  # relaxed, not hard
    eps = 1e-6
    for j in range(3):
        with torch.no_grad():
            d[j] += eps
            up = loss_of(model, "gumbel", temperature)[0].item()
            d[j] -= 2 * eps
            down = loss_of(model, "gumbel", temperature)[0].item()
            d[j] += eps
        assert grad[j].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_gumbel_temperature_is_annealed_geometrically(idx_dir):
    cfg = small_config(idx_dir, "train.gumbel_temperature=[2.0, 0.02]", "train.max_epochs=4")
    assert gumbel_temperature(cfg, 0) == 2.0
    assert gumbel_temperature(cfg, 2) == pytest.approx(0.2)  # halfway in log scale
    assert gumbel_temperature(cfg, 4) == pytest.approx(0.02) == gumbel_temperature(cfg, 9)


def test_distillation_by_hand():
    student, teacher, t = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]]), 2.0

    def softmax(values):
        exps = [math.exp(v / t) for v in values]
        return [e / sum(exps) for e in exps]

    p, q = softmax([3.0, 2.0, 1.0]), softmax([1.0, 2.0, 3.0])
    expected = t * t * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert distillation(student, teacher, t).item() == pytest.approx(expected, rel=1e-6)
    assert distillation(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("estimator", ["straight_through", "gumbel"])
def test_short_run_learns_with_each_estimator(idx_dir, estimator):
    cfg = small_config(idx_dir, f"train.estimator={estimator}")
    splits = load_idx_splits(idx_dir, 200)
    result = train(cfg, splits)
    test = evaluate(result.model, splits.x_test, splits.y_test, "sample")
    assert test.error < 0.25, test.error
    assert all(0 < rate < 1 for rate in test.activation_rate)


def test_distillation_from_a_run_end_to_end(idx_dir, tmp_path):
    base = ["train", *[a for s in [*SMALL, f"data.dir={json.dumps(str(idx_dir))}"] for a in ("--set", s)]]
    teacher = tmp_path / "teacher"
    assert main([*base, "--set", "model.kind=nn", "--out", str(teacher)]) == 0
    distill = ["--set", f"train.teacher={json.dumps(str(teacher))}", "--set", "train.distill_weight=0.5"]
    assert main([*base, *distill, "--out", str(tmp_path / "student")]) == 0
    assert json.loads((tmp_path / "student" / "metrics.json").read_text())["test_error"]["sample"] < 0.25


def test_a_teacher_that_is_not_a_finished_run_is_refused(idx_dir, tmp_path, capsys):
    base = ["train", *[a for s in [*SMALL, f"data.dir={json.dumps(str(idx_dir))}"] for a in ("--set", s)]]
    missing = json.dumps(str(tmp_path / "nope"))
    args = [*base, "--set", f"train.teacher={missing}", "--set", "train.distill_weight=0.5"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "no run at" in capsys.readouterr().err
    assert main([*base, "--set", "train.distill_weight=0.5", "--out", str(tmp_path / "r")]) == 2
    assert "train.distill_weight" in capsys.readouterr().err
