"""`condnet sparsify`: unit grouping against planted groups, exact permutation and conversion against the
dense network, block importance by hand, train.init, and the command end to end on fixture data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from condnet.cli import main
from condnet.config import load_config
from condnet.engine import Engine
from condnet.errors import TrainingError
from condnet.experiment import load_run
from condnet.nn.checkpoint import save_checkpoint
from condnet.nn.condnet import CondNet
from condnet.sparsify.convert import (
    SparsifyOptions,
    block_importance,
    convert,
    gated_config,
    hidden_activations,
)
from condnet.sparsify.grouping import balanced_assignment, balanced_clusters, permute_units
from condnet.train.loop import start_from
from test_training import SMALL


def test_balanced_clusters_recover_planted_groups_of_equal_size():
    rng = np.random.default_rng(0)
    prototypes = rng.normal(size=(4, 50))
    truth = rng.permutation(np.repeat(np.arange(4), 8))  # 32 units, 4 groups of 8, shuffled
    profiles = prototypes[truth] + 0.05 * rng.normal(size=(32, 50))
    groups = balanced_clusters(profiles, 8, seed=1)
    assert groups.shape == (4, 8)
    assert sorted(groups.reshape(-1)) == list(range(32))
    found = {frozenset(g.tolist()) for g in groups}
    assert found == {frozenset(np.flatnonzero(truth == c).tolist()) for c in range(4)}


def test_balanced_assignment_respects_sizes_and_takes_closest_pairs_first():
    # point 0 is closest to cluster 0, and so are points 1 and 2; cluster 0 takes only 2 points
    distance = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 3.0], [9.0, 0.5]])
    assert balanced_assignment(distance, 2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="do not fill"):
        balanced_assignment(distance, 3)


def _dense(widths, activation="relu", seed=0):
    cfg = load_config(
        None,
        ["model.kind=nn", f"model.widths={widths}", "model.block_size=4", f"model.activation={activation}"],
    )
    torch.manual_seed(seed)
    return cfg, CondNet(20, 3, cfg.model).eval()


@pytest.mark.parametrize("layer", [0, 1])
def test_permuting_units_leaves_the_function_unchanged(layer):
    _, model = _dense([12, 8], "tanh")
    x = torch.randn(7, 20)
    before = model(x).logits
    state = model.state_dict()
    original = state[f"hidden.{layer}.weight"].clone()
    order = np.random.default_rng(3).permutation(model.cfg.widths[layer])
    permute_units(state, layer, order, "hidden.1" if layer == 0 else "output")
    model.load_state_dict(state)
    assert torch.equal(model.hidden[layer].weight, original[order])
    assert torch.allclose(model(x).logits, before, atol=1e-6)


def test_block_importance_by_hand():
    h = torch.tensor([[1.0, 2.0, 0.0, 3.0]])  # blocks of 2: (1, 2) and (0, 3)
    v = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 0.0]])
    # block 0 adds (1*1 + 2*0, 1*0 + 2*1) = (1, 2), norm sqrt(5); block 1 adds (0 + 3, 0 + 0) = (3, 0), norm 3
    assert torch.allclose(block_importance(h, v, 2), torch.tensor([[5**0.5, 3.0]]))


def test_converted_net_with_every_block_and_equal_gates_is_the_dense_net():
    cfg, dense = _dense([16, 24])
    x = torch.randn(30, 20)
    options = SparsifyOptions(layer=1, block_size=4, k=5, profile_examples=30)
    gated, groups = convert(dense, cfg, hidden_activations(dense, x)[1], options, 1)
    assert sorted(groups.reshape(-1)) == list(range(24))
    with torch.no_grad():  # equal router scores: every chosen block's gate is 1/k; k = 5 of the 6 blocks
        gated.policies[1].Z.zero_()
        gated.policies[1].d.zero_()
        gated.policies[1].d[groups.shape[0] - 1] = -1.0  # the last block is the one left out
    hidden = torch.relu(dense.hidden[1](torch.relu(dense.hidden[0](x))))
    dropped = groups[-1]
    hidden[:, dropped] = 0  # the dense net without the left-out block's units (old unit order)
    expected = dense.output(hidden)
    assert torch.allclose(gated(x, mode="threshold").logits, expected, atol=1e-5)


def test_train_init_refuses_another_model(tmp_path):
    cfg, dense = _dense([16])
    save_checkpoint(dense, tmp_path / "init")
    _, other = _dense([8])
    with pytest.raises(TrainingError, match="holds another model"):
        start_from(other, str(tmp_path / "init"))
    same = CondNet(20, 3, cfg.model)
    start_from(same, str(tmp_path / "init"))
    assert torch.equal(same.hidden[0].weight, dense.hidden[0].weight)


def test_gated_config_gates_only_the_chosen_layer():
    cfg, _ = _dense([16, 64])
    gated = gated_config(cfg, 1, SparsifyOptions(block_size=8, k=2, router_lr=0.002), "somewhere")
    m = gated.model
    assert (m.kind, m.router, m.gated, m.block_size[1], m.k[1]) == ("condnet", "topk", [False, True], 8, 2)
    assert gated.train.lr_policy[1] == 0.002 and gated.train.init == "somewhere"


def test_sparsify_end_to_end(tmp_path, idx_dir, capsys):
    data = f"data.dir={json.dumps(str(idx_dir))}"
    dense_run = tmp_path / "dense"
    args = ["train", "--out", str(dense_run)]
    for item in [*SMALL, data, "model.kind=nn", "model.widths=[16, 32]", "model.activation=relu",
                 "train.max_epochs=2"]:  # fmt: skip
        args += ["--set", item]
    assert main(args) == 0
    out = tmp_path / "sparse"
    args = ["sparsify", str(dense_run), "--out", str(out), "--block-size", "8", "--k", "2",
            "--router-epochs", "2", "--set", "train.max_epochs=2"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "sparsify.json").read_text())
    assert 0 <= summary["router_valid_recall"] <= 1 and summary["options"]["layer"] == 1
    assert "fine-tuned" in capsys.readouterr().out
    # the fine-tuned run is an ordinary finished run: the engine computes what the model computes
    _, model, splits = load_run(out / "finetuned")
    assert model.cfg.router == "topk" and model.cfg.gated == [False, True]
    x = splits.x_test[:50]
    engine_logits = Engine(model).forward(x.numpy(), mode="threshold")[0]
    assert np.allclose(engine_logits, model(x, mode="threshold").logits.detach().numpy(), atol=1e-4)
    assert main(args) == 2  # a second time without --force: refused, nothing lost
    assert "holds a finished sparsify" in capsys.readouterr().err


def test_sparsify_refuses_a_gated_run_and_bad_options(tmp_path, idx_dir, capsys):
    run = tmp_path / "gated"
    args = ["train", "--out", str(run)]
    for item in [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=1"]:
        args += ["--set", item]
    assert main(args) == 0
    assert main(["sparsify", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "gates a dense run" in capsys.readouterr().err
    assert main(["sparsify", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
