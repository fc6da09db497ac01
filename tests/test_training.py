"""Short training runs on the generated MNIST-format fixture: learning happens, runs are reproducible,
and the command line writes and re-reads a complete run directory."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from condnet.cli import main
from condnet.config import load_config
from condnet.data.splits import load_idx_splits
from condnet.train.evaluate import evaluate
from condnet.train.loop import train

SMALL = [
    "data.name=idx",
    "data.valid_size=200",
    "model.widths=[32]",
    "model.block_size=[8]",
    "model.tau=0.5",
    "train.optimizer=adam",
    "train.loss_reduction=mean",
    "train.lr_net=0.01",
    "train.lr_policy=0.01",
    "train.lambda_s=1",
    "train.lambda_v=1",
    "train.lambda_l2=0",
    "train.batch_size=32",
    "train.max_epochs=8",
]


def small_config(idx_dir, *extra):
    return load_config(None, [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", *extra])


@pytest.mark.parametrize("kind", ["condnet", "nn", "bdnn"])
def test_short_run_learns(idx_dir, kind):
    cfg = small_config(idx_dir, f"model.kind={kind}")
    splits = load_idx_splits(idx_dir, 200)
    result = train(cfg, splits)
    test = evaluate(result.model, splits.x_test, splits.y_test, "sample")
    assert test.error < 0.25, test.error  # chance is 0.75 with 4 classes
    assert result.history[0].train_error > result.history[-1].train_error


def test_same_seed_same_numbers(idx_dir):
    splits = load_idx_splits(idx_dir, 200)
    a = train(small_config(idx_dir, "train.max_epochs=2"), splits)
    b = train(small_config(idx_dir, "train.max_epochs=2"), splits)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_policy_gradients_reach_only_the_policy(idx_dir):
    """The REINFORCE and regularizer terms must not move W; the NLL must not move Z, d."""
    from condnet.train.loop import training_loss
    from condnet.train.objective import Baseline

    cfg = small_config(idx_dir, "train.lambda_l2=0")
    splits = load_idx_splits(idx_dir, 200)
    torch.manual_seed(0)
    from condnet.nn.condnet import CondNet

    model = CondNet(splits.input_dim, splits.n_classes, cfg.model)
    out = model(splits.x_train[:16], generator=torch.Generator().manual_seed(0))
    loss, nll = training_loss(model, out, splits.y_train[:16], cfg, Baseline())
    policy_part = loss - nll.mean()  # the network term of the loss is the mean NLL here
    grads = torch.autograd.grad(policy_part, model.network_parameters(), allow_unused=True, retain_graph=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    grads = torch.autograd.grad(nll.mean(), model.policy_parameters(0), allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads)


def test_cli_train_eval_summary(idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        *[a for s in SMALL for a in ("--set", s)],
        "--set",
        f"data.dir={json.dumps(str(idx_dir))}",
    ]
    assert main([*args, "--set", "train.max_epochs=3", "--seed", "4", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {
        "test_error",
        "activation_rate",
        "macs",
        "dense_macs",
        "epochs",
        "train_seconds",
        "seed",
        "trained_on",
    }
    assert set(metrics["test_error"]) == {"sample", "threshold"} and metrics["seed"] == 4
    assert metrics["trained_on"] == socket.gethostname()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == metrics["epochs"] and "entropy" in json.loads(lines[0])
    for name in (
        "config.toml",
        "model.safetensors",
        "model.json",
        "learning_curves.png",
        "policy_layer1.png",
    ):
        assert (out / name).is_file()
    capsys.readouterr()

    # eval recomputes the same numbers from the checkpoint: threshold exactly, sample with the same seed
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{100 * metrics['test_error']['sample']:.2f}%" in printed.splitlines()[0]
    assert f"{100 * metrics['test_error']['threshold']:.2f}%" in printed.splitlines()[1]
    from condnet.experiment import evaluate_run

    assert evaluate_run(out, "threshold").error == metrics["test_error"]["threshold"]
    assert evaluate_run(out, "sample").error == metrics["test_error"]["sample"]

    assert main(["eval", str(out), "--mode", "threshold", "--engine"]) == 0
    engine_line = capsys.readouterr().out.splitlines()[-1]
    assert f"{100 * metrics['test_error']['threshold']:.2f}%" in engine_line and "engine" in engine_line

    assert main(["summary", str(out)]) == 0
    assert str(out) in capsys.readouterr().out

    # a finished run is never overwritten by accident
    assert main([*args, "--out", str(out)]) == 2
    assert "holds a finished run" in capsys.readouterr().err


def test_cli_reports_bad_config_without_traceback(tmp_path, capsys):
    assert main(["train", "--set", "model.tau=2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "model.tau" in err and "Traceback" not in err


def test_divergence_is_reported_with_what_to_change(idx_dir, tmp_path, capsys):
    args = [
        "train",
        *[a for s in SMALL for a in ("--set", s)],
        "--set",
        f"data.dir={json.dumps(str(idx_dir))}",
    ]
    assert (
        main(
            [
                *args,
                "--set",
                "train.optimizer=sgd",
                "--set",
                "train.lr_net=1e30",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "train.lr_net" in err and "Traceback" not in err


def test_lambda_s_warmup_scales_the_rate_terms_linearly(idx_dir):
    """With a warm-up of 4 epochs, the loss at progress p equals the loss with lambda_s * p / 4."""
    from condnet.nn.condnet import CondNet
    from condnet.nn.gates.bernoulli import block_balance, example_balance
    from condnet.train.loop import training_loss
    from condnet.train.objective import Baseline

    cfg = small_config(idx_dir, "train.lambda_s=3.0", "train.lambda_s_warmup=4")
    splits = load_idx_splits(idx_dir, 200)
    torch.manual_seed(0)
    model = CondNet(splits.input_dim, splits.n_classes, cfg.model)
    out = model(splits.x_train[:16], generator=torch.Generator().manual_seed(0))
    y = splits.y_train[:16]
    tau = cfg.model.tau[0]
    rate_terms = sum(block_balance(t.sigma, tau) + example_balance(t.sigma, tau) for t in out.layers)
    full, _ = training_loss(model, out, y, cfg, Baseline(), progress=4.0)
    for progress, fraction in ((0.0, 0.0), (1.0, 0.25), (3.0, 0.75), (9.0, 1.0)):
        loss, _ = training_loss(model, out, y, cfg, Baseline(), progress=progress)
        expected = full - 3.0 * (1 - fraction) * rate_terms
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6), progress


def test_early_stopping_ignores_the_warmup_epochs(idx_dir):
    cfg = small_config(idx_dir, "train.lambda_s_warmup=3", "train.max_epochs=4", "train.patience=5")
    result = train(cfg, load_idx_splits(idx_dir, 200))
    assert len(result.history) == 4 and result.best_epoch >= 3
    cfg = small_config(idx_dir, "train.lambda_s_warmup=9", "train.max_epochs=2")  # longer than training
    assert train(cfg, load_idx_splits(idx_dir, 200)).best_epoch == 2


def test_a_certain_gate_has_zero_entropy_not_nan():
    """Routers decide with certainty (hash: sigma is the 0/1 mask; a hardened tree: leaves of 0 and 1):
    their entropy is 0 bits, not 0 * log 0 = NaN (seen as "entropy": [NaN] in a tree run's metrics)."""
    import math

    from condnet.train.evaluate import bernoulli_entropy_bits

    sigma = torch.tensor([[0.0, 1.0, 0.5, 0.25]])
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    torch.testing.assert_close(bernoulli_entropy_bits(sigma), torch.tensor([[0.0, 0.0, 1.0, h]]))
