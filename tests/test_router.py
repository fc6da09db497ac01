"""Top-k routing: exactly k blocks, gate values and the load-balancing loss by hand, the router learns
by backprop, and the engine computes the same network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from condnet.config import Config, ModelConfig, validate
from condnet.data.splits import load_idx_splits
from condnet.engine import Engine
from condnet.errors import ConfigError
from condnet.nn.condnet import CondNet
from condnet.nn.gates import load_balance
from condnet.nn.gates.topk import gate_values, top_k_mask
from condnet.train.evaluate import evaluate
from condnet.train.loop import train
from test_training import small_config


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 20), n_blocks=st.integers(1, 12), data=st.data())
def test_top_k_picks_exactly_k_of_the_largest(batch, n_blocks, data):
    k = data.draw(st.integers(1, n_blocks))
    scores = torch.from_numpy(np.random.default_rng(batch * 100 + n_blocks).normal(size=(batch, n_blocks)))
    mask = top_k_mask(scores, k)
    assert torch.all(mask.sum(dim=1) == k)
    for row, on in zip(scores.tolist(), mask.tolist(), strict=True):
        chosen = sorted(s for s, m in zip(row, on, strict=True) if m)
        assert chosen == sorted(row)[-k:]


def test_gate_values_by_hand():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    e1, e3 = math.exp(1.0), math.exp(3.0)
    expected = torch.tensor([[e1 / (e1 + e3), 0.0, e3 / (e1 + e3)], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(gate_values(scores, mask), expected)


def test_load_balance_by_hand():
    uniform = torch.full((4, 4), 0.25)
    spread = torch.eye(4)  # each example to its own block
    assert load_balance(uniform, spread).item() == pytest.approx(1.0)
    crowded = torch.tensor([[1.0, 0, 0, 0]] * 4)  # every example to block 0, with probability 1
    assert load_balance(crowded, crowded).item() == pytest.approx(4.0)
    # f = (0.5, 0.5, 0, 0), P = (0.4, 0.3, 0.2, 0.1): 4 * (0.5 * 0.4 + 0.5 * 0.3) = 1.4
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]] * 2)
    assert load_balance(probs, torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])).item() == pytest.approx(1.4)


def test_switch_gate_values_by_hand():
    from condnet.nn.gates.switch import gate_values as switch_values

    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    e1, e2, e3 = math.exp(1.0), math.exp(2.0), math.exp(3.0)
    # the softmax over every block, kept where the block is on (not renormalised over those)
    expected = torch.tensor([[e1 / (e1 + e2 + e3), 0.0, e3 / (e1 + e2 + e3)], [0.0, 1 / 3, 0.0]])
    torch.testing.assert_close(switch_values(scores, mask), expected)


def test_balanced_switch_shares_a_batch_by_hand():
    """Two blocks, every example preferring block 0 by 3, 2.5, 1, 0.5. Balanced, the shares are
    sigmoid(preference + c) with c making each block's total 2: by symmetry c = -1.75, so the two
    strongest preferences get block 0 and the others block 1 (top-1 of the raw scores: block 0 for all)."""
    from condnet.nn.gates.switch import balanced

    preference = torch.tensor([3.0, 2.5, 1.0, 0.5], dtype=torch.float64)
    scores = torch.stack([preference, torch.zeros(4, dtype=torch.float64)], dim=1)
    share = torch.sigmoid(preference - 1.75)
    torch.testing.assert_close(balanced(scores).exp(), torch.stack([share, 1 - share], dim=1))
    model = topk_model(k=1, gated=(False, True), router="balanced_switch").train()
    router = model.policies[1]
    assert router.choose(scores)[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert router.eval().choose(scores)[:, 0].tolist() == [1.0] * 4  # inference: the switch router's


def test_balanced_switch_ignores_what_a_block_is_preferred_by_everyone():
    """A constant added to one block's scores (its offset d) moves the switch router's choice to that
    block for every example, and the balanced choice not at all: each column is normalised."""
    from condnet.nn.gates.switch import balanced

    scores = torch.from_numpy(np.random.default_rng(5).normal(size=(40, 4)))
    favoured = scores + torch.tensor([10.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert top_k_mask(favoured, 1)[:, 0].sum() == 40
    mask = top_k_mask(balanced(favoured), 1)
    assert torch.equal(mask, top_k_mask(balanced(scores), 1))
    assert mask.sum(dim=0).min() >= 5  # every block shares the batch (10 each if exactly even)


def topk_model(k=2, gated=(True, True), router="topk") -> CondNet:
    torch.manual_seed(0)
    sizes = [4 if gated[0] else 24, 4]  # a dense layer may be one block: k = 2 is not asked of it
    cfg = ModelConfig(widths=[24, 16], block_size=sizes, router=router, k=[k], gated=list(gated))
    return CondNet(10, 3, validate(Config(model=cfg)).model).eval()


@pytest.mark.parametrize("router", ["topk", "switch", "balanced_switch"])
def test_with_one_block_only_the_switch_router_learns_from_the_task(router):
    """Top-k's gate values are a softmax over the k blocks on: with k = 1 the value is 1 whatever the
    scores, and the task's gradient never reaches the router (only the balance loss trains it). The
    switch router's value is the block's probability among all blocks, which the task can move."""
    model = topk_model(k=1, router=router).train()
    out = model(torch.rand(8, 10))
    loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 3, (8,)))
    grads = torch.autograd.grad(loss, [model.policies[0].Z, model.policies[0].d])
    moved = [g.abs().sum().item() > 0 for g in grads]
    assert moved == ([False, False] if router == "topk" else [True, True])


def test_the_task_loss_reaches_the_router_through_the_gates():
    model = topk_model()
    out = model(torch.rand(8, 10))
    assert torch.all(out.layers[0].mask.sum(dim=1) == 2)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 3, (8,)))
    grads = torch.autograd.grad(loss, [model.policies[0].Z, model.policies[1].d])
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("router", ["topk", "switch", "balanced_switch"])
def test_a_top_k_net_learns(idx_dir, router):
    cfg = small_config(idx_dir, f"model.router={router}", "model.k=1", "train.lambda_balance=0.01")
    splits = load_idx_splits(idx_dir, 200)
    result = train(cfg, splits)
    test = evaluate(result.model, splits.x_test, splits.y_test, "threshold")
    assert test.error < 0.25, test.error
    assert test.activation_rate == [pytest.approx(0.25)]  # 1 of 4 blocks, for every example


def test_k_is_checked_against_the_gated_layers_only():
    with pytest.raises(ConfigError, match=r"model.k\[1\].*from 1 to 4"):
        validate(Config(model=ModelConfig(widths=[16, 16], block_size=[2, 4], router="topk", k=[5])))
    cfg = ModelConfig(widths=[8, 16], block_size=[8, 4], router="topk", k=[3], gated=[False, True])
    assert validate(Config(model=cfg)).model.k == [3, 3]


def test_tree_leaf_probabilities_and_path_by_hand():
    from condnet.nn.gates.tree import leaf_probabilities, tree_path_mask

    # depth 2: root, then its left and right children; scores 1.0 (right), -2.0 and 0.5
    scores = torch.tensor([[1.0, -2.0, 0.5]])
    s = torch.sigmoid(scores[0])
    expected = [(1 - s[0]) * (1 - s[1]), (1 - s[0]) * s[1], s[0] * (1 - s[2]), s[0] * s[2]]
    torch.testing.assert_close(leaf_probabilities(scores)[0], torch.stack(expected))
    assert tree_path_mask(scores).tolist() == [[0.0, 0.0, 0.0, 1.0]]  # right, then right
    assert tree_path_mask(torch.tensor([[-1.0, 3.0, -9.0]])).tolist() == [[0.0, 1.0, 0.0, 0.0]]


def tree_model(gated=(True, True)) -> CondNet:
    torch.manual_seed(1)
    sizes = [4 if gated[0] else 32, 2]
    cfg = ModelConfig(widths=[32, 16], block_size=sizes, router="tree", gated=list(gated))
    return CondNet(10, 3, validate(Config(model=cfg)).model).eval()


def test_a_tree_routes_each_example_to_one_block_and_trains_its_path():
    model = tree_model()
    assert model.policies[1].Z.shape == (7, 4 * 8) and model.policy_rows == [3, 3]  # 8 leaves, depth 3
    out = model(torch.rand(6, 10))
    assert all(torch.all(layer.mask.sum(dim=1) == 1) for layer in out.layers)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.randint(0, 3, (6,)))
    (grad,) = torch.autograd.grad(loss, [model.policies[0].d])
    assert grad.abs().sum() > 0


# Every router: a small model (10 inputs, hidden layers given as gated or dense) and the blocks it
# computes per example in each gated layer.
ROUTED = {
    "topk": (lambda gated: topk_model(k=2, gated=gated), 2),
    "switch": (lambda gated: topk_model(k=2, gated=gated, router="switch"), 2),
    "balanced_switch": (lambda gated: topk_model(k=2, gated=gated, router="balanced_switch"), 2),
    "tree": (tree_model, 1),
    "hash": (lambda gated: hash_model(k=3, gated=gated), 3),
    "balanced_hash": (lambda gated: balanced_hash_model(k=2, gated=gated), 2),
}


@pytest.mark.parametrize("batch", [1, 9])
@pytest.mark.parametrize("gated", [(True, True), (False, True)])
@pytest.mark.parametrize("router", sorted(ROUTED))
def test_engine_makes_the_routers_decisions_and_matches_the_model(batch, gated, router):
    make, on = ROUTED[router]
    model = make(gated)
    x = np.random.default_rng(3).random((batch, 10), dtype=np.float32)
    logits, masks = Engine(model).forward(x)
    assert all(m.sum(axis=1).tolist() == [on] * batch for m, g in zip(masks, gated, strict=True) if g)
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    for mine, theirs in zip(masks, expected.layers, strict=True):
        assert np.array_equal(mine, theirs.mask.numpy())
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=1e-5, atol=1e-6)


def test_a_tree_needs_a_power_of_two_blocks_and_learns(idx_dir):
    with pytest.raises(ConfigError, match="power of 2"):
        validate(Config(model=ModelConfig(widths=[12], block_size=[4], router="tree")))
    splits = load_idx_splits(idx_dir, 200)
    for soft in (
        [],
        ["train.tree_soft_epochs=2", "train.lambda_harden=0.01"],
    ):  # hard path; soft mixture first
        cfg = small_config(idx_dir, "model.router=tree", *soft)  # 4 blocks of 8: depth 2
        result = train(cfg, splits)
        test = evaluate(result.model, splits.x_test, splits.y_test, "threshold")
        assert test.error < 0.25, (soft, test.error)
        assert test.activation_rate == [pytest.approx(0.25)]


def test_soft_tree_is_every_leaf_weighted_by_its_path_probability():
    model = tree_model(gated=(False, True))  # a dense layer, then a tree over 8 leaves of 2 units
    x = torch.rand(5, 10)
    with torch.no_grad():
        soft = model(x, soft_tree=True)
        h1 = torch.tanh(model.hidden[0](x))
        scores = model.policies[1](h1)
        # the path probability of each leaf by hand: the product along its path (right: sigmoid(score))
        leaf_p = torch.ones(5, 8)
        for leaf in range(8):
            node = 0
            for level in range(3):
                right = (leaf >> (2 - level)) & 1
                p = torch.sigmoid(scores[:, node])
                leaf_p[:, leaf] *= p if right else 1 - p
                node = 2 * node + 1 + right
        h2 = torch.tanh(model.hidden[1](h1)) * leaf_p.repeat_interleave(2, dim=1)
        expected = model.output(h2)
    assert torch.allclose(soft.logits, expected, atol=1e-6)
    assert torch.all(soft.layers[1].mask == 1)
    assert torch.allclose(leaf_p.sum(dim=1), torch.ones(5))


def test_path_entropy_by_hand():
    from condnet.nn.gates.tree import path_entropy

    leaves = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert torch.isclose(path_entropy(leaves), torch.tensor(math.log(2) / 2))


def hash_model(k=2, gated=(True, True)) -> CondNet:
    torch.manual_seed(2)
    sizes = [4 if gated[0] else 32, 2]  # 8 blocks, then 8 blocks: 3 planes per table
    cfg = ModelConfig(widths=[32, 16], block_size=sizes, router="hash", k=[k], gated=list(gated))
    return CondNet(10, 3, validate(Config(model=cfg)).model).eval()


def test_hash_tables_by_hand():
    """Blocks from the signs of each table's planes (bit i from plane i), modulo the blocks, and a
    taken block moved to the next free one; the planes are fixed, saved, and nothing is learned."""
    from condnet.nn.gates.hash import hash_mask

    # 6 blocks: 3 planes per table. Table 0: signs + - + -> 1 + 4 = 5; table 1: + + + -> 7 % 6 = 1;
    # table 2: - - + -> 4. Second example: table 0 -> 1 + 2 = 3, table 1 -> 3 (taken) -> 4, table 2 ->
    # 0 + 2 + 4 = 6 % 6 = 0.
    scores = torch.tensor([[1.0, -1.0, 2.0, 0.5, 0.5, 0.5, -3.0, -0.1, 0.2],
                           [0.3, 0.3, -1.0, 1.0, 1.0, -1.0, -1.0, 2.0, 2.0]])  # fmt: skip
    expected = [[0, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 0]]
    assert hash_mask(scores, 3, 6).tolist() == expected
    model = hash_model(k=2)
    assert model.policy_parameters(0) == [] and model.policies[0].planes.shape == (2 * 3, 10)
    assert "policies.1.planes" in model.state_dict()
    x = torch.rand(4, 10)
    out = model(x, mode="sample")
    by_hand = hash_mask(x @ model.policies[0].planes.T, 2, 8)
    assert torch.equal(out.layers[0].mask, by_hand) and torch.equal(
        model(x, mode="threshold").layers[0].mask, by_hand
    )


def balanced_hash_model(k=2, gated=(True, True)) -> CondNet:
    """A balanced hash net fitted on 101 non-negative examples (pixels): the offsets are set."""
    torch.manual_seed(2)
    sizes = [4 if gated[0] else 32, 2]
    cfg = ModelConfig(widths=[32, 16], block_size=sizes, router="balanced_hash", k=[k], gated=list(gated))
    model = CondNet(10, 3, validate(Config(model=cfg)).model).eval()
    model.fit_gates(torch.rand(101, 10, generator=torch.Generator().manual_seed(4)))
    return model


def test_a_balanced_hash_splits_its_fitting_data_in_half():
    """Each plane's offset is the middle of its scores on the fitting data (101 examples: the 51st
    smallest, computed by sorting), so every bit is 1 for half the examples; on non-negative inputs
    the plain hash's planes through the origin split them unevenly."""
    x = torch.rand(100, 10, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(2)
    cfg = ModelConfig(widths=[32, 16], block_size=[4, 2], router="balanced_hash", k=[1])
    model = CondNet(10, 3, validate(Config(model=cfg)).model)
    model.fit_gates(x)
    assert model.training  # fitting leaves the mode as it found it
    gate = model.policies[0]
    scores = (x @ gate.planes.T).numpy()
    ordered = np.sort(scores, axis=0)
    np.testing.assert_allclose(gate.offsets.numpy(), (ordered[49] + ordered[50]) / 2, rtol=1e-6)
    assert ((scores > gate.offsets.numpy()).sum(axis=0) == 50).all()
    assert "policies.0.offsets" in model.state_dict() and model.policy_parameters(0) == []
    plain = hash_model(k=1)  # the same planes through the origin: some plane far from half
    plain_bits = (x @ plain.policies[0].planes.T > 0).float().mean(dim=0)
    assert (plain_bits - 0.5).abs().max() > 0.2


def test_a_balanced_hash_of_one_block_has_nothing_to_fit():
    """Found by `condnet parity`: one block has no planes (the hash always picks it)."""
    cfg = ModelConfig(widths=[8], block_size=[8], router="balanced_hash", k=[1])
    model = CondNet(5, 2, validate(Config(model=cfg)).model)
    model.fit_gates(torch.rand(7, 5))
    assert model.policies[0].offsets.shape == (0,)
    assert model(torch.rand(3, 5)).layers[0].mask.tolist() == [[1.0]] * 3


def test_training_fits_a_balanced_hash_once(idx_dir):
    """TrainState.new fits the offsets on the training data (before the first epoch); a resumed state
    keeps them (they are a saved buffer, never changed by training)."""
    from condnet.train.loop import TrainState

    cfg = small_config(idx_dir, "model.router=balanced_hash", "model.k=1")
    splits = load_idx_splits(idx_dir, 200)
    state = TrainState.new(cfg, splits)
    gate = state.model.policies[0]
    on = (splits.x_train @ gate.planes.T > gate.offsets).float().mean(dim=0)
    assert torch.all((on - 0.5).abs() <= 1 / len(splits.x_train)), on
    before = gate.offsets.clone()
    result = train(cfg, splits)
    assert torch.equal(result.model.policies[0].offsets, before)


def test_a_hash_routed_net_learns(idx_dir):
    cfg = small_config(idx_dir, "model.router=hash", "model.k=1")
    splits = load_idx_splits(idx_dir, 200)
    result = train(cfg, splits)
    test = evaluate(result.model, splits.x_test, splits.y_test, "threshold")
    assert test.error < 0.4, test.error
    assert test.activation_rate == [pytest.approx(0.25)]


def test_only_the_gates_compare_kind_router_or_view_strings():
    """Issue 18's acceptance as a test: a router, model kind or router view is asked of the gates (or
    the config's `is_gated`), never compared with its name outside the gates packages and the engine's
    lowering (reproduce's report and figures, and the model's view dispatch, did)."""
    import re
    from pathlib import Path

    import condnet

    root = Path(condnet.__file__).parent
    allowed = {root / "gates", root / "nn" / "gates", root / "engine" / "lowering.py"}
    # an attribute or key named kind or router against a literal, or anything against the kind constants
    # (not a dtype's kind, nor an objective's own `self.kind`: its baseline)
    named = r"""((?<!self)(?<!dtype)\.(kind|router)|\[["'](kind|router)["']\])\s*(==|!=|not in|in)\s*["'(]"""
    compared = re.compile(rf"{named}|(==|!=)\s*(DENSE_KIND|UNIFORM_KIND)|(DENSE_KIND|UNIFORM_KIND)\s*(==|!=)")
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        if not any(path == a or a in path.parents for a in allowed)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if compared.search(line)
    ]
    assert found == []
