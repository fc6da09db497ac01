"""The block-gated model against a dense masked computation written out by hand."""

from __future__ import annotations

import pytest
import torch

from condnet.config import Config, ModelConfig, validate
from condnet.nn.condnet import CondNet
from condnet.nn.macs import active_macs, dense_macs


def model(kind="condnet", widths=(12, 8), block_size=(4, 2), activation="tanh", seed=0):
    cfg = Config(
        model=ModelConfig(kind=kind, widths=list(widths), block_size=list(block_size), activation=activation)
    )
    torch.manual_seed(seed)
    return CondNet(5, 3, validate(cfg).model)


def reference_forward(net: CondNet, x, masks):
    """h_l = f(W_l h_{l-1} + b_l) * repeat(u_l), written with explicit loops over units."""
    h = x
    for layer, mask, size in zip(net.hidden, masks, net.block_sizes, strict=True):
        pre = h @ layer.weight.T + layer.bias
        act = torch.tanh(pre) if net.cfg.activation == "tanh" else torch.clamp(pre, min=0)
        unit_mask = torch.stack([mask[:, j // size] for j in range(pre.shape[1])], dim=1)
        h = act * unit_mask
    return h @ net.output.weight.T + net.output.bias


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_given_masks_match_reference(activation):
    net = model(activation=activation)
    x = torch.randn(6, 5)
    masks = [torch.randint(0, 2, (6, 3)).float(), torch.randint(0, 2, (6, 4)).float()]
    out = net(x, masks=masks)
    torch.testing.assert_close(out.logits, reference_forward(net, x, masks))


def test_inactive_block_outputs_zero_and_gets_no_gradient():
    net = model()
    x = torch.randn(2, 5)
    masks = [torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]), torch.ones(2, 4)]
    # the hidden output of block 1 (units 4..7) of example 0 is exactly zero
    h1 = torch.tanh(net.hidden[0](x)) * masks[0].repeat_interleave(4, dim=1)
    assert torch.all(h1[0, 4:8] == 0)
    out = net(x[:1], masks=[m[:1] for m in masks])
    out.logits.sum().backward()
    grad = net.hidden[0].weight.grad
    assert torch.all(grad[4:8] == 0) and torch.all(net.hidden[0].bias.grad[4:8] == 0)
    assert grad[0:4].abs().sum() > 0  # an active block does learn


def test_threshold_mode_is_sigma_above_half():
    net = model()
    x = torch.randn(7, 5)
    out = net(x, mode="threshold")
    for trace in out.layers:
        assert torch.equal(trace.mask, (trace.sigma > 0.5).float())
    torch.testing.assert_close(out.logits, reference_forward(net, x, [t.mask for t in out.layers]))


def test_sample_mode_is_seeded_and_follows_sigma():
    net = model()
    x = torch.randn(4000, 5)
    a = net(x, generator=torch.Generator().manual_seed(3))
    b = net(x, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(s.mask, t.mask) for s, t in zip(a.layers, b.layers, strict=True))
    sigma, mask = a.layers[0].sigma, a.layers[0].mask
    # empirical rate within 5 standard errors of the mean probability
    se = (sigma * (1 - sigma)).mean().sqrt() / mask.numel() ** 0.5
    assert abs(mask.mean() - sigma.mean()) < 5 * se


def test_probabilities_stay_in_clip_range():
    net = model()
    out = net(1e4 * torch.randn(50, 5))
    for trace in out.layers:
        assert trace.sigma.min() >= 0.01 - 1e-7 and trace.sigma.max() <= 0.99 + 1e-7


def test_dense_nn_equals_all_blocks_on():
    net = model(kind="nn")
    x = torch.randn(3, 5)
    out = net(x)
    torch.testing.assert_close(out.logits, reference_forward(net, x, [torch.ones(3, 3), torch.ones(3, 4)]))


def test_bdnn_draws_at_rate_tau():
    cfg = Config(model=ModelConfig(kind="bdnn", widths=[400], block_size=[4], tau=[0.25]))
    net = CondNet(5, 3, validate(cfg).model)
    out = net(torch.randn(500, 5), generator=torch.Generator().manual_seed(0))
    assert abs(out.layers[0].mask.mean().item() - 0.25) < 0.01  # 50,000 draws: se ~ 0.002


def test_bad_input_shape_is_explained():
    with pytest.raises(ValueError, match=r"\(batch, 5\)"):
        model()(torch.randn(2, 6))


def test_macs_by_hand():
    # input 5, blocks of 4 then 2, 3 classes; example 0: 2 of 3 blocks, then 1 of 4
    masks = [torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 0.0, 0.0]])]
    # layer 1: 5 * 8 + policy 5 * 3; layer 2: 8 * 2 + policy 8 * 4; output 2 * 3
    assert active_macs(5, [4, 2], 3, masks).item() == 40 + 15 + 16 + 32 + 6
    assert active_macs(5, [4, 2], 3, masks, policy_rows=False).item() == 40 + 16 + 6
    assert dense_macs(5, [12, 8], 3) == 60 + 96 + 24
