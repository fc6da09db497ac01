"""`condnet experts`: the routing statistics against hand-computed values, and the router, random and
oracle errors against a dense masked computation of the network written out here."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from condnet.config import Config, ModelConfig, validate
from condnet.errors import CondnetError
from condnet.nn.condnet import CondNet
from condnet.report import experts


def test_share_entropy_and_label_information_by_hand():
    eye = torch.eye(4)
    one_hot = eye[[0, 1, 2, 3, 0, 1, 2, 3]]
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert experts.share_entropy_bits(one_hot) == pytest.approx(2.0)  # four blocks, even load
    assert experts.label_information_bits(one_hot, labels, 4) == pytest.approx(2.0)  # the block is the label
    # every example computes both blocks: even load, and the choice says nothing about the label
    both = torch.ones(4, 2)
    assert experts.share_entropy_bits(both) == pytest.approx(1.0)
    assert experts.label_information_bits(both, torch.tensor([0, 0, 1, 1]), 2) == pytest.approx(0.0)
    # three examples on block 0, one on block 1: H(3/4, 1/4); labels independent of the block
    skew = eye[[0, 0, 0, 1]][:, :2]
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert experts.share_entropy_bits(skew) == pytest.approx(h)
    assert experts.label_information_bits(eye[[0, 1, 0, 1]][:, :2], torch.tensor([0, 0, 1, 1]), 2) == (
        pytest.approx(0.0)
    )


def one_layer(router: str, k: int, n_blocks: int = 4, size: int = 3, seed: int = 0) -> CondNet:
    torch.manual_seed(seed)
    cfg = ModelConfig(widths=[n_blocks * size], block_size=[size], router=router, k=[k], gated=[True],
                      router_input="input")  # fmt: skip
    return CondNet(6, 3, validate(Config(model=cfg)).model).eval()


def by_hand(model: CondNet, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The network written out: every unit computed, each block's units scaled by its weight (0 when off)."""
    units = torch.tanh(x @ model.hidden[0].weight.T + model.hidden[0].bias)
    scale = (chosen * weights).repeat_interleave(model.block_sizes[0], dim=1)
    return (units * scale) @ model.output.weight.T + model.output.bias


def data(n: int = 300, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


ROUTERS = [("hash", 1), ("hash", 2), ("topk", 1), ("topk", 2), ("tree", 1), ("switch", 1)]


@pytest.mark.parametrize(("router", "k"), ROUTERS)
@torch.no_grad()
def test_errors_against_the_network_written_out(router, k):
    model = one_layer(router, k)
    model.output.bias.copy_(torch.tensor([0.4, -0.3, 0.1]))  # as large as a block's term: weights matter
    x, y = data()
    report = experts.routing_report(model, x, y)
    out = model(x, mode="threshold")
    mask = out.layers[0].mask
    assert report.error_router == pytest.approx(float((out.logits.argmax(1) != y).float().mean()))
    mixes = router != "hash"  # top-k and tree mix their blocks with values summing to 1; hash by the mask
    weight = 1.0 / k if mixes else 1.0
    equal = by_hand(model, x, mask, torch.full_like(mask, weight))
    assert report.error_router_equal == pytest.approx(float((equal.argmax(1) != y).float().mean()))
    # the oracle: some set of k blocks gets the example right
    right = torch.zeros(len(y), dtype=torch.bool)
    for blocks in itertools.combinations(range(4), k):
        chosen = torch.zeros_like(mask)
        chosen[:, list(blocks)] = 1.0
        right |= by_hand(model, x, chosen, torch.full_like(mask, weight)).argmax(1) == y
    assert report.oracle == "exact"
    assert report.error_oracle == pytest.approx(1 - float(right.float().mean()))
    assert report.error_oracle <= min(report.error_router_equal, report.error_random)
    values = mask if out.layers[0].gates is None else out.layers[0].gates
    for e in report.experts:  # each expert alone, at its mean gate value on its share, on it and the others
        own = mask[:, e.block] > 0
        alone = torch.zeros_like(mask)
        alone[:, e.block] = 1.0
        weight = float(values[own, e.block].mean()) if own.any() else 1.0
        wrong = by_hand(model, x, alone, torch.full_like(mask, weight)).argmax(1) != y
        assert e.share == pytest.approx(float(own.float().mean()))
        assert e.alone_own == (pytest.approx(float(wrong[own].float().mean())) if own.any() else None)
        assert e.alone_others == (pytest.approx(float(wrong[~own].float().mean())) if (~own).any() else None)
    assert report.blocks_per_example == pytest.approx(k)


@torch.no_grad()
def test_the_greedy_oracle_when_there_are_too_many_sets(monkeypatch):
    model = one_layer("topk", 2)
    x, y = data()
    exact = experts.routing_report(model, x, y).error_oracle
    monkeypatch.setattr(experts, "ORACLE_EXACT_SETS", 1)
    greedy = experts.routing_report(model, x, y)
    assert greedy.oracle == "greedy"
    assert exact <= greedy.error_oracle  # the exact oracle tries every set greedy could build


def test_a_dense_last_layer_is_refused_with_what_to_give():
    cfg = ModelConfig(widths=[8, 8], block_size=[4, 4], router="topk", k=[1], gated=[True, False])
    model = CondNet(6, 3, validate(Config(model=cfg)).model)
    x, y = data(10)
    with pytest.raises(CondnetError, match="last hidden layer is dense"):
        experts.routing_report(model, x, y)
