"""Training's block-by-block forward (condnet.nn.active_blocks) against the masked dense computation
written out by hand: same logits, same gradients for the weights, the biases and the router."""

from __future__ import annotations

import pytest
import torch

from condnet.config import Config, ModelConfig, validate
from condnet.nn import active_blocks
from condnet.nn.condnet import CondNet
from condnet.nn.gates import How


def wide_model(router, activation, k=1, seed=0) -> CondNet:
    torch.manual_seed(seed)
    cfg = ModelConfig(widths=[512], block_size=[64], router=router, k=[k], gated=[True],
                      router_input="input", activation=activation)  # fmt: skip
    return CondNet(20, 3, validate(Config(model=cfg)).model)


def masked_dense(net: CondNet, x):
    """The gate's decision, then f(W x + b) * repeat(gate values) for every unit, then the output."""
    trace = net.policies[0].decide(x, How("threshold"), None)
    scale = trace.mask if trace.gates is None else trace.gates
    layer = net.hidden[0]
    pre = x @ layer.weight.T + layer.bias
    act = torch.tanh(pre) if net.cfg.activation == "tanh" else torch.clamp(pre, min=0)
    h = act * torch.stack([scale[:, j // 64] for j in range(pre.shape[1])], dim=1)
    return h @ net.output.weight.T + net.output.bias, trace.mask


def gradients(net: CondNet, logits) -> dict[str, torch.Tensor]:
    net.zero_grad()
    (logits * torch.linspace(-1, 1, logits.numel()).reshape(logits.shape)).sum().backward()
    return {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("router,k", [("topk", 1), ("topk", 2), ("tree", 1), ("hash", 1)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_active_blocks_match_the_masked_dense_layer(router, k, activation, monkeypatch):
    monkeypatch.setattr(active_blocks, "MIN_WORK_PER_BLOCK", 0)  # a layer small enough to test by hand
    net = wide_model(router, activation, k)
    x = torch.randn(40, 20)
    calls = []
    monkeypatch.setattr(active_blocks, "active_blocks", lambda *a: calls.append(1) or real(*a))
    out = net(x, mode="threshold")
    assert calls, "the block-by-block path was not taken"
    expected, mask = masked_dense(net, x)
    assert torch.equal(out.layers[0].mask, mask)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    got, want = gradients(net, out.logits), gradients(net, expected)
    assert got.keys() == want.keys() and "hidden.0.weight" in got
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    if router == "tree" or k > 1:  # (a top-1 gate value is always 1, a hash has no parameters)
        assert want["policies.0.Z"].abs().sum() > 0  # the router learns through the gate values


real = active_blocks.active_blocks


def test_an_example_with_no_block_on_outputs_zero():
    layer = torch.nn.Linear(4, 128)
    mask = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    out = active_blocks.active_blocks(torch.randn(2, 4), layer, torch.tanh, mask, mask, 64)
    assert torch.all(out[1] == 0) and torch.all(out[0, :64] == 0) and torch.any(out[0, 64:] != 0)
    none = active_blocks.active_blocks(torch.randn(2, 4), layer, torch.tanh, mask * 0, mask * 0, 64)
    assert none.shape == (2, 128) and torch.all(none == 0)


def test_the_dense_product_is_kept_where_it_is_faster_or_needed():
    """The loop pays when each block's share of the dense product, batch x inputs x block units, outweighs
    the loop's own cost per block (measured, docs/active_blocks_speed.py); numbers by hand."""
    sparse = torch.zeros(128, 64)
    sparse[:, 0] = 1
    assert active_blocks.pays(sparse, 784, 32)  # 128 x 784 x 32 = 3.2 M multiply-adds a block
    assert active_blocks.pays(sparse, 784, 64)
    assert not active_blocks.pays(sparse, 784, 16)  # 1.6 M: the loop costs more than it saves
    assert not active_blocks.pays(sparse, 64, 64)  # 0.5 M: a gated layer after a narrow one
    assert not active_blocks.pays(sparse[:32], 784, 64)  # 1.6 M: a small batch
    assert not active_blocks.pays(torch.ones(128, 64), 784, 64)  # most blocks on
    assert not active_blocks.pays(sparse.clone().requires_grad_(), 784, 64)  # a relaxed mask owes gradient
    with torch.no_grad():  # inference: no backward, the loop pays for 64-unit blocks whatever the batch
        assert active_blocks.pays(sparse[:1], 784, 64) and active_blocks.pays(sparse, 64, 64)
        assert not active_blocks.pays(sparse, 784, 32)


def test_dropout_is_drawn_for_the_active_units_only():
    """Unit dropout inside the loop: each active unit is 0 or its undropped value / (1 - p), about a
    share p of them 0 (binomial bounds), and every inactive unit 0, as dropout over the whole layer."""
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(30, 256), torch.randn(400, 30)
    mask = torch.zeros(400, 8)
    mask[torch.arange(400), torch.randint(0, 8, (400,))] = 1
    plain = active_blocks.active_blocks(x, layer, torch.tanh, mask, mask, 32)
    dropped = active_blocks.active_blocks(x, layer, torch.tanh, mask, mask, 32, dropout=0.25)
    active = mask.repeat_interleave(32, dim=1).bool()
    assert torch.all(dropped[~active] == 0)
    kept = dropped[active] != 0
    torch.testing.assert_close(dropped[active][kept], plain[active][kept] / 0.75)
    n = int(active.sum())  # 12,800 units: the share dropped is 0.25 within 4.5 standard deviations
    assert abs(float((~kept).float().mean()) - 0.25) < 4.5 * (0.25 * 0.75 / n) ** 0.5
