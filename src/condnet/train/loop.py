"""The training loop: network weights by backprop, policies by REINFORCE, at the same time.

Early stopping on the validation error (sample mode, the paper's inference): the weights of the best
epoch are kept and restored at the end; with a lambda_s warm-up, only epochs from its end on count.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from condnet.config import Config
from condnet.data.splits import Splits
from condnet.errors import TrainingError
from condnet.nn.condnet import CondNet
from condnet.train.evaluate import evaluate
from condnet.train.objective import (
    Baseline,
    block_balance,
    example_balance,
    reinforce_surrogate,
    squared_norm,
    variance_reward,
)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean NLL over the epoch's minibatches (sample mode, training masks)
    train_error: float
    valid_loss: float  # sample mode
    valid_error: float
    activation_rate: list[float]  # on the validation split, per hidden layer
    entropy: list[float]  # mean policy entropy (bits per block) on the validation split, per hidden layer
    train_seconds: float  # wall-clock of this epoch's updates (evaluation excluded)


@dataclass
class TrainResult:
    model: CondNet
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0


def make_optimizer(model: CondNet, cfg: Config) -> torch.optim.Optimizer:
    """One optimizer, one parameter group for the network and one per policy layer (own rates)."""
    groups = [{"params": model.network_parameters(), "lr": cfg.train.lr_net}]
    for layer, lr in enumerate(cfg.train.lr_policy):
        params = model.policy_parameters(layer)
        if params:
            groups.append({"params": params, "lr": lr})
    if cfg.train.optimizer == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups)


def training_loss(model: CondNet, out, y: torch.Tensor, cfg: Config, baseline: Baseline, progress=1.0):
    """The scalar whose gradient updates every parameter (see condnet.train.objective for which part
    reaches which parameters). `progress`: epochs done so far (fractional), for the lambda_s warm-up.
    Returns (loss, per-example NLL)."""
    t = cfg.train
    lambda_s = t.lambda_s * min(1.0, progress / t.lambda_s_warmup) if t.lambda_s_warmup > 0 else t.lambda_s
    nll = F.cross_entropy(out.logits, y, reduction="none")
    reduce = torch.sum if t.loss_reduction == "sum" else torch.mean
    loss = reduce(nll) + t.lambda_l2 * squared_norm(model.network_parameters())
    if model.cfg.kind == "condnet":
        b = baseline(nll)
        for index, (trace, tau) in enumerate(zip(out.layers, model.cfg.tau, strict=True)):
            loss = loss + reduce(reinforce_surrogate(trace.sigma, trace.mask, nll, b))
            loss = loss + lambda_s * (block_balance(trace.sigma, tau) + example_balance(trace.sigma, tau))
            loss = loss + t.lambda_v * variance_reward(trace.sigma)
            loss = loss + t.lambda_l2 * squared_norm(model.policy_parameters(index))
    return loss, nll


def train(
    cfg: Config,
    splits: Splits,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a model as `cfg` says. on_batch(done, total) and on_epoch(record) report progress."""
    torch.manual_seed(cfg.seed)
    model = CondNet(splits.input_dim, splits.n_classes, cfg.model)
    optimizer = make_optimizer(model, cfg)
    baseline = Baseline(cfg.train.baseline, cfg.train.baseline_momentum)
    masks_rng = torch.Generator().manual_seed(cfg.seed)
    order_rng = torch.Generator().manual_seed(cfg.seed + 1)
    result = TrainResult(model)
    best_error, best_state, stale = float("inf"), None, 0
    n, bs = len(splits.x_train), cfg.train.batch_size
    n_batches = (n + bs - 1) // bs
    for epoch in range(1, cfg.train.max_epochs + 1):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n, generator=order_rng)
        nll_sum = err_sum = 0.0
        for batch, start in enumerate(range(0, n, bs)):
            idx = order[start : start + bs]
            x, y = splits.x_train[idx], splits.y_train[idx]
            out = model(x, mode="sample", generator=masks_rng)
            loss, nll = training_loss(model, out, y, cfg, baseline, epoch - 1 + batch / n_batches)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"the training loss became {loss.item()} at epoch {epoch}, batch {batch}; "
                    f"lower train.lr_net / train.lr_policy or the lambdas"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            nll_sum += nll.sum().item()
            err_sum += (out.logits.argmax(dim=1) != y).sum().item()
            if on_batch:
                on_batch(batch + 1, n_batches)
        seconds = time.perf_counter() - started
        result.train_seconds += seconds
        valid = evaluate(model, splits.x_valid, splits.y_valid, "sample", cfg.train.eval_batch_size, cfg.seed)
        record = EpochRecord(
            epoch,
            nll_sum / n,
            err_sum / n,
            valid.loss,
            valid.error,
            valid.activation_rate,
            valid.entropy,
            seconds,
        )
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if epoch < min(cfg.train.lambda_s_warmup, cfg.train.max_epochs):
            continue  # during the warm-up the rate is not yet pulled to tau: not a model to keep
        if valid.error < best_error:
            best_error, best_state, stale, result.best_epoch = (
                valid.error,
                copy.deepcopy(model.state_dict()),
                0,
                epoch,
            )
        else:
            stale += 1
            if stale >= cfg.train.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return result
