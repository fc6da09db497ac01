"""model.router_input: what the gates read (the layer's input, the network's input, a pooled view of
it, a learned projection of it), against hand-computed values; the engine makes the same decisions and
gives the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condnet.config import Config, ModelConfig, validate
from condnet.engine import Engine
from condnet.errors import ConfigError
from condnet.nn.condnet import CondNet


def model_of(router, router_input, gated=(True, True), k=2, input_dim=16, seed=0) -> CondNet:
    torch.manual_seed(seed)
    cfg = ModelConfig(widths=[16, 16], block_size=[4, 4], router=router, k=[k], gated=list(gated),
                      router_input=router_input, p_min=0.2, p_max=0.8)  # fmt: skip
    return CondNet(input_dim, 3, validate(Config(model=cfg)).model).eval()


def test_a_pooled_view_by_hand():
    """A 1 x 4 x 4 image pooled to 2 x 2: each value the mean of its 2 x 2 square, row-major."""
    model = model_of("bernoulli", "pool2")
    x = torch.arange(16, dtype=torch.float32)[None]  # rows 0-3, 4-7, 8-11, 12-15
    expected = torch.tensor(
        [[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]]
    )
    torch.testing.assert_close(model.router_view(x), expected)
    gate = model.policies[1]
    assert gate.Z.shape == (4, 4)  # layer 2's policy reads the 4 pooled values, not layer 1's 16 units
    with torch.no_grad():
        out = model(x, mode="threshold")
        sigma = 0.2 + 0.6 * torch.sigmoid(expected @ gate.Z.T + gate.d)
    torch.testing.assert_close(out.layers[1].sigma, sigma)
    assert torch.equal(out.layers[1].mask, (sigma > 0.5).float())


def test_the_network_input_for_a_deeper_layer():
    model = model_of("topk", "input")
    x = torch.rand(3, 16)
    with torch.no_grad():
        out = model(x)
        scores = x @ model.policies[1].Z.T + model.policies[1].d
    torch.testing.assert_close(out.layers[1].sigma, torch.softmax(scores, dim=1))


def test_a_view_that_does_not_fit_the_input_is_refused():
    with pytest.raises(
        ConfigError, match="pool3.*allowed for 1 x 4 x 4 images: layer, input, pool1, pool2, pool4"
    ):
        model_of("bernoulli", "pool3")
    with pytest.raises(ConfigError, match="not a square image"):
        model_of("bernoulli", "pool2", input_dim=15)


def test_macs_count_the_view_and_the_routers_on_it():
    """784-inputs, a top-2 router of 8 blocks on a 7 x 7 view: 784 adds for the view, 8 x 49 for the
    router, 2 blocks of 16 units x 784 inputs, then 32 active units x 10 classes."""
    torch.manual_seed(0)
    cfg = ModelConfig(widths=[128], block_size=[16], router="topk", k=[2], router_input="pool7")
    model = CondNet(784, 10, validate(Config(model=cfg)).model)
    mask = torch.zeros(1, 8)
    mask[0, :2] = 1
    assert model.macs([mask]).item() == 784 + 8 * 49 + 2 * 16 * 784 + 32 * 10


def test_a_projection_by_hand():
    """proj2 on 16 inputs: every gate reads P x + b, P (2, 16) shared (one tensor in the state_dict)."""
    model = model_of("bernoulli", "proj2")
    with torch.no_grad():
        model.router_projection.weight.zero_()
        model.router_projection.weight[0, 0] = 1.0  # view[0] = x0 - 1
        model.router_projection.weight[1, 1:3] = 2.0  # view[1] = 2 (x1 + x2)
        model.router_projection.bias.copy_(torch.tensor([-1.0, 0.0]))
    x = torch.arange(16, dtype=torch.float32)[None]
    expected = torch.tensor([[0.0 - 1.0, 2.0 * (1.0 + 2.0)]])
    torch.testing.assert_close(model.router_view(x), expected)
    assert {k for k in model.state_dict() if "projection" in k} == {"router_projection.weight",
                                                                    "router_projection.bias"}  # fmt: skip
    for gate in model.policies:
        assert gate.Z.shape == (4, 2)
        with torch.no_grad():
            sigma = 0.2 + 0.6 * torch.sigmoid(expected @ gate.Z.T + gate.d)
            out = model(x, mode="threshold")
        torch.testing.assert_close(out.layers[gate.spec.layer.index].sigma, sigma)


def test_the_projection_learns_from_the_gates_losses_only():
    """The task loss through a top-k router's gate values and the policy loss reach P; P's gradient
    equals the finite difference of the same loss."""
    from condnet.config import TrainConfig
    from condnet.train.loop import make_optimizer

    model = model_of("topk", "proj3").train()
    x, y = torch.rand(5, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    model = model.double()

    def loss():
        out = model(x, mode="threshold")
        return torch.nn.functional.cross_entropy(out.logits, y)

    loss().backward()
    grad = model.router_projection.weight.grad[1, 4].item()
    assert grad != 0
    step = 1e-6
    with torch.no_grad():
        model.router_projection.weight[1, 4] += step
        up = loss().item()
        model.router_projection.weight[1, 4] -= 2 * step
        down = loss().item()
    assert grad == pytest.approx((up - down) / (2 * step), rel=1e-4)
    cfg = validate(Config(model=model.cfg, train=TrainConfig(lr_policy=[0.5, 0.25])))
    groups = make_optimizer(model, cfg).param_groups
    [projection] = [g for g in groups if any(p is model.router_projection.weight for p in g["params"])]
    assert projection["lr"] == 0.5  # the first gated layer's policy rate
    assert all(p is not model.router_projection.weight for p in model.network_parameters())


def test_a_net_without_gates_has_no_projection():
    model = model_of("topk", "proj3", gated=(False, False))
    assert model.router_projection is None and not any("projection" in k for k in model.state_dict())


def test_a_hash_routers_projection_is_not_trained():
    """No loss of a hash router reaches its projection: it stays as drawn (not shrunk by weight decay)."""
    from condnet.train.loop import make_optimizer

    model = model_of("balanced_hash", "proj3")
    trained = {id(p) for group in make_optimizer(model, validate(Config(model=model.cfg))).param_groups
               for p in group["params"]}  # fmt: skip
    assert model.view_parameters() == [] and id(model.router_projection.weight) not in trained
    assert model.view_weights == 3 * 16 + 3


def test_a_projection_is_refused_when_wider_than_the_input():
    with pytest.raises(ConfigError, match="proj17.*allowed for 16 inputs: proj1 to proj16"):
        model_of("topk", "proj17")
    with pytest.raises(ConfigError, match="projR"):
        validate(Config(model=ModelConfig(widths=[16], block_size=[4], router="topk", router_input="proj0")))


def test_macs_and_bytes_count_the_projection():
    """784 inputs projected to 8 (784 x 8 multiply-adds, once), a top-2 router of 8 blocks on them."""
    torch.manual_seed(0)
    cfg = ModelConfig(widths=[128], block_size=[16], router="topk", k=[2], router_input="proj8")
    model = CondNet(784, 10, validate(Config(model=cfg)).model)
    mask = torch.zeros(1, 8)
    mask[0, :2] = 1
    assert model.macs([mask]).item() == 784 * 8 + 8 * 8 + 2 * 16 * 784 + 32 * 10
    assert model.view_weights == 784 * 8 + 8


@pytest.mark.parametrize("batch", [1, 9])
@pytest.mark.parametrize("view", ["layer", "input", "pool2", "pool1", "proj3", "proj16"])
@pytest.mark.parametrize("router", ["bernoulli", "topk", "switch", "tree", "hash"])
def test_the_engine_reads_the_same_view(router, view, batch):
    model = model_of(router, view, k=2 if router != "tree" else 1, seed=3)
    with torch.no_grad():  # spread the policies' scores so that threshold decisions are not all alike
        for gate in model.policies:
            if hasattr(gate, "Z"):
                gate.Z.mul_(4)
    x = np.random.default_rng(5).random((batch, 16), dtype=np.float32)
    logits, masks = Engine(model).forward(x, mode="threshold")
    with torch.no_grad():
        expected = model(torch.from_numpy(x), mode="threshold")
    for mine, theirs in zip(masks, expected.layers, strict=True):
        assert np.array_equal(mine, theirs.mask.numpy())
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=1e-5, atol=1e-6)
