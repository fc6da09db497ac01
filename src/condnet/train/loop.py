"""The training loop: network weights by backprop, policies by REINFORCE (or another estimator, or
backprop through a router's gates; train/objective.py), at the same time.

Early stopping on the validation error (sample mode, the paper's inference): the weights of the best
epoch are kept and restored at the end; with a lambda_s warm-up, only epochs from its end on count.
After every epoch the whole training state (weights, optimizer, generators, early stopping, baseline)
can be saved, and a killed run continues from it bit-identical to one never stopped (`train`).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import pickle
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from condnet import gates
from condnet.config import Config, to_toml
from condnet.data.splits import Splits
from condnet.errors import TrainingError
from condnet.nn.checkpoint import load_checkpoint
from condnet.nn.condnet import CondNet
from condnet.run_dir import EPOCH_LOG, TRAIN_STATE, RunDir, write_atomic
from condnet.train.estimators import ESTIMATORS
from condnet.train.evaluate import evaluate
from condnet.train.jitter import image_shape, jitter
from condnet.train.objective import Baseline, add_l2_gradient, distillation


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
    """One optimizer, one parameter group for the network and one per policy layer (own rates; each
    group's `initial_lr` is what the schedule scales). Decoupled weight decay on the network only."""
    t = cfg.train
    groups = [{"params": model.network_parameters(), "lr": t.lr_net, "weight_decay": t.weight_decay}]
    for layer, lr in enumerate(t.lr_policy):
        params = model.policy_parameters(layer)
        if params:
            groups.append({"params": params, "lr": lr, "weight_decay": 0.0})
    if model.view_parameters():  # a projection every gate reads: the first gated layer's policy rate
        first = next(layer for layer, gate in enumerate(model.policies) if gate.spec.name != "dense")
        groups.append({"params": model.view_parameters(), "lr": t.lr_policy[first], "weight_decay": 0.0})
    for group in groups:
        group["initial_lr"] = group["lr"]
    if t.optimizer == "adam":  # fused: one pass over each tensor (the default steps one op at a time:
        # on a 784 x 2048 layer 34 ms a step against 4 on one core, most of a gated trial's step)
        adam = torch.optim.AdamW if t.weight_decay > 0 else torch.optim.Adam
        return adam(groups, fused=True)
    return torch.optim.SGD(groups)


def lr_factor(cfg: Config, progress: float) -> float:
    """What the learning rates are multiplied by after `progress` epochs (fractional): a linear warm-up
    from 0 over train.warmup_epochs, then 1 (constant) or a cosine from 1 to 0 at train.max_epochs."""
    t = cfg.train
    if progress < t.warmup_epochs:
        return progress / t.warmup_epochs
    if t.schedule == "constant":
        return 1.0
    done = (progress - t.warmup_epochs) / (t.max_epochs - t.warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def gumbel_temperature(cfg: Config, progress: float) -> float:
    """Geometric from train.gumbel_temperature[0] (progress 0) to [1] (the last epoch's end)."""
    first, last = cfg.train.gumbel_temperature
    return first * (last / first) ** min(1.0, progress / cfg.train.max_epochs)


def training_loss(
    model: CondNet, out, y: torch.Tensor, cfg: Config, baseline: Baseline, progress=1.0, teacher=None
):
    """The scalar whose gradient updates every parameter (see condnet.train.objective for which part
    reaches which parameters). `progress`: epochs done so far (fractional), for the lambda_s warm-up.
    teacher: the teacher's logits for these examples (distillation), or None. The L2 penalty is not in
    it: its gradient is added after the backward pass (add_l2_gradient, on l2_parameters).
    Returns (loss, per-example NLL)."""
    t = cfg.train
    lambda_s = t.lambda_s * min(1.0, progress / t.lambda_s_warmup) if t.lambda_s_warmup > 0 else t.lambda_s
    nll = F.cross_entropy(out.logits, y, reduction="none")
    cost = nll
    if teacher is not None:
        w = t.distill_weight
        cost = (1 - w) * nll + w * distillation(out.logits, teacher, t.distill_temperature)
    reduce = torch.sum if t.loss_reduction == "sum" else torch.mean
    loss = reduce(cost)
    estimator = ESTIMATORS[t.estimator]
    learned = [(g, trace) for g, trace in zip(model.policies, out.layers, strict=True) if g.spec.learned]
    drawn = any(gate.spec.draws for gate, _ in learned)  # the estimator's part: draws that learn
    b = baseline(cost) if drawn and estimator.uses_baseline else 0.0
    for gate, trace in learned:
        if gate.spec.draws:
            surrogate = estimator.surrogate(trace, cost, b)
            if surrogate is not None:
                loss = loss + reduce(surrogate)
        loss = gate.add_losses(loss, trace, t, lambda_s)
    return loss, nll


def l2_parameters(model: CondNet) -> list[torch.nn.Parameter]:
    """What lambda_L2 penalises: Theta_NN, the learned gates' parameters and the view they read."""
    learned = [p for gate in model.policies if gate.spec.learned for p in gate.parameters()]
    return [*model.network_parameters(), *learned, *model.view_parameters()]


def teacher_logits(cfg: Config, splits: Splits) -> torch.Tensor | None:
    """The teacher run's logits on the training split (computed once: no augmentation, so exact), or
    None without distillation. Gated teachers decide by threshold (bdNN, which has none, by sampling)."""
    if not cfg.train.teacher or cfg.train.distill_weight == 0:
        return None
    run_dir = RunDir(cfg.train.teacher).require_finished()
    teacher = load_checkpoint(run_dir)
    if (teacher.input_dim, teacher.n_classes) != (splits.input_dim, splits.n_classes):
        raise TrainingError(
            f"train.teacher {run_dir} has {teacher.input_dim} inputs and {teacher.n_classes} classes; "
            f"the data has {splits.input_dim} and {splits.n_classes}: choose a teacher trained on this data"
        )
    mode = "threshold" if gates.has_threshold_mode(teacher.cfg) else "sample"
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        chunks = [teacher(x, mode=mode, generator=generator).logits for x in splits.x_train.split(1000)]
    return torch.cat(chunks)


def start_from(model: CondNet, directory: str) -> None:
    """Load train.init's weights into `model`, whose configuration they must have been saved with."""
    init = load_checkpoint(directory)
    if (init.cfg, init.input_dim, init.n_classes) != (model.cfg, model.input_dim, model.n_classes):
        raise TrainingError(
            f"train.init {directory} holds another model ({init.input_dim} inputs, {init.n_classes} "
            f"classes, {init.cfg}); its [model] and data must be this config's"
        )
    model.load_state_dict(init.state_dict())


FIT_EXAMPLES = 10_000  # enough for a median per hash plane to within ~1 % of the examples


def fit_gates(model: CondNet, x_train: torch.Tensor, seed: int) -> None:
    """Fit the gates that are fitted to data (balanced_hash) on FIT_EXAMPLES training examples drawn
    with the run's seed, once, before training (docs/hash_balance.py fits them the same way)."""
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + 3))
    model.fit_gates(x_train[order[:FIT_EXAMPLES]])


STATE_MAGIC = b"condnet-train-state sha256 "  # train_state.pt: this, the payload's hash, a newline, payload


@dataclass
class TrainState:
    """Everything a run needs to continue after its last finished epoch exactly as if never stopped."""

    model: CondNet
    optimizer: torch.optim.Optimizer
    baseline: Baseline
    masks_rng: torch.Generator  # the training masks' draws
    order_rng: torch.Generator  # the minibatch order
    result: TrainResult
    jitter_rng: torch.Generator | None = None  # the input jitter's shifts (train.jitter > 0)
    best_error: float = float("inf")
    best_state: dict | None = None  # the best epoch's weights
    stale: int = 0  # epochs since the best one
    cfg: Config | None = None  # the config it trains with

    @classmethod
    def new(cls, cfg: Config, splits: Splits) -> TrainState:
        torch.manual_seed(cfg.seed)
        model = CondNet(splits.input_dim, splits.n_classes, cfg.model)
        if cfg.train.init:
            start_from(model, cfg.train.init)
        elif any(gate.fitted for gate in model.policies):  # balanced_hash
            fit_gates(model, splits.x_train, cfg.seed)
        return cls(
            model,
            make_optimizer(model, cfg),
            Baseline(cfg.train.baseline, cfg.train.baseline_momentum),
            torch.Generator().manual_seed(cfg.seed),
            torch.Generator().manual_seed(cfg.seed + 1),
            TrainResult(model),
            jitter_rng=torch.Generator().manual_seed(cfg.seed + 2) if cfg.train.jitter else None,
            cfg=cfg,
        )

    def save(self, path: Path) -> None:
        """Written atomically (a kill leaves the previous epoch's state), as tensors and plain values:
        read back with torch.load(weights_only=True), which runs no pickled code."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline.average,
            "masks_rng": self.masks_rng.get_state(),
            "order_rng": self.order_rng.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout's draws
            **({"jitter_rng": self.jitter_rng.get_state()} if self.jitter_rng is not None else {}),
            "history": [asdict(record) for record in self.result.history],
            "best_epoch": self.result.best_epoch,
            "train_seconds": self.result.train_seconds,
            "best_error": self.best_error,
            "best_state": self.best_state,
            "stale": self.stale,
            "config": to_toml(self.cfg),  # what the saved epochs were trained with (checked on resume)
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        # the payload's SHA-256 first, in the same file (one atomic write: no moment where they disagree)
        write_atomic(path, STATE_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)

    def load(self, path: Path) -> None:
        """Continue from the state at `path`, which must have been saved with this state's config."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrainingError(
                f"the training state {path} cannot be read ({exc.strerror}); start the run again with --force"
            ) from None
        header = len(STATE_MAGIC) + 65  # the magic, 64 hex digits and a newline
        digest, payload = data[len(STATE_MAGIC) : header - 1], data[header:]
        if not data.startswith(STATE_MAGIC) or hashlib.sha256(payload).hexdigest().encode() != digest:
            raise TrainingError(
                f"the training state {path} does not match its recorded SHA-256 (corrupted, or written by an "
                f"older condnet); resuming from it would silently change the run: start again with --force"
            )
        try:
            state = torch.load(io.BytesIO(payload), weights_only=True)
        except (pickle.UnpicklingError, OSError, RuntimeError, ValueError, EOFError, TypeError) as exc:
            # torch's message advises weights_only=False, which would run the file's code: not said here
            raise TrainingError(
                f"the training state {path} is not one condnet wrote ({type(exc).__name__}); it was not "
                f"loaded (no code in it ran): start the run again with --force"
            ) from None
        saved = state.get("config") if isinstance(state, dict) else None
        if isinstance(state, dict) and saved != to_toml(self.cfg):  # first: nothing is restored from an edit
            changed = _changed(saved, self.cfg)
            raise TrainingError(
                f"config.toml of {path.parent} was edited after training started ({changed}: not what "
                f"its saved epochs were trained with); restore it, or start the run again with --force"
            )
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise TrainingError(
                f"the training state {path} does not hold what condnet saves ({type(exc).__name__}: {exc}); "
                f"start the run again with --force"
            ) from None

    def _restore(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict")
        groups = [sorted(group) for group in self.optimizer.state_dict()["param_groups"]]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if [sorted(group) for group in self.optimizer.state_dict()["param_groups"]] != groups:
            raise ValueError(f"the optimizer's settings are not {self.cfg.train.optimizer}'s")
        self.baseline.average = state["baseline"]
        self.masks_rng.set_state(state["masks_rng"])
        self.order_rng.set_state(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.jitter_rng is not None:
            self.jitter_rng.set_state(state["jitter_rng"])
        self.result.history = [EpochRecord(**record) for record in state["history"]]
        self.result.best_epoch, self.result.train_seconds = state["best_epoch"], state["train_seconds"]
        self.best_error, self.best_state = state["best_error"], state["best_state"]
        self.stale = state["stale"]


def _changed(saved, cfg: Config) -> str:
    """Which keys of a saved config (TOML) differ from cfg, for TrainState.load's message."""
    if not isinstance(saved, str):
        return "the config"

    def flat(table, prefix=""):
        pairs = {}
        for name, value in table.items():
            key = prefix + name
            pairs.update(flat(value, f"{key}.") if isinstance(value, dict) else {key: value})
        return pairs

    before, now = flat(tomllib.loads(saved)), flat(tomllib.loads(to_toml(cfg)))
    keys = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    return ", ".join(f"{k} = {now.get(k)!r} (was {before.get(k)!r})" for k in keys) or "the config"


def train_epoch(
    state: TrainState, cfg: Config, splits: Splits, epoch: int, on_batch=None, teacher=None
) -> EpochRecord:
    """One pass over the training split in a fresh random order, then the validation error.
    teacher: the teacher's logits on the whole training split (distillation), or None."""
    model, n, bs = state.model, len(splits.x_train), cfg.train.batch_size
    n_batches = (n + bs - 1) // bs
    model.train()
    started = time.perf_counter()
    order = torch.randperm(n, generator=state.order_rng)
    scheduled = cfg.train.schedule != "constant" or cfg.train.warmup_epochs > 0
    image = image_shape(splits.input_dim, cfg.train.jitter) if cfg.train.jitter else None
    nll_sum = err_sum = 0.0
    penalised = l2_parameters(model)
    for batch, start in enumerate(range(0, n, bs)):
        idx = order[start : start + bs]
        x, y = splits.x_train[idx], splits.y_train[idx]
        if cfg.train.jitter:
            x = jitter(x, cfg.train.jitter, *image, state.jitter_rng)
        progress = epoch - 1 + batch / n_batches
        temperature = gumbel_temperature(cfg, progress)
        soft_tree = epoch <= cfg.train.tree_soft_epochs
        out = model(x, "sample", state.masks_rng, estimator=ESTIMATORS[cfg.train.estimator],
                    temperature=temperature, soft_tree=soft_tree)  # fmt: skip
        soft = None if teacher is None else teacher[idx]
        loss, nll = training_loss(model, out, y, cfg, state.baseline, progress, soft)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss.item()} at epoch {epoch}, batch {batch}; "
                f"lower train.lr_net / train.lr_policy or the lambdas"
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        add_l2_gradient(penalised, cfg.train.lambda_l2)
        if scheduled:  # the rate of this step: after batch + 1 of the epoch (a pure function: resumable)
            factor = lr_factor(cfg, epoch - 1 + (batch + 1) / n_batches)
            for group in state.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
        state.optimizer.step()
        nll_sum += nll.sum().item()
        err_sum += (out.logits.argmax(dim=1) != y).sum().item()
        if on_batch:
            on_batch(batch + 1, n_batches)
    seconds = time.perf_counter() - started
    check_weights(model, epoch)
    valid = evaluate(model, splits.x_valid, splits.y_valid, "sample", cfg.train.eval_batch_size, cfg.seed)
    return EpochRecord(
        epoch,
        nll_sum / n,
        err_sum / n,
        valid.loss,
        valid.error,
        valid.activation_rate,
        valid.entropy,
        seconds,
    )


def check_weights(model: CondNet, epoch: int) -> None:
    """TrainingError when the weights' squared norm left float32's range (weights past ~1e19): such a net
    can still score, but its products overflow downstream (a finite loss does not show it)."""
    with torch.no_grad():
        size = torch.stack([p.pow(2).sum() for p in model.parameters()]).sum()
    if not torch.isfinite(size):
        raise TrainingError(
            f"the weights grew past float32's range at epoch {epoch} (squared norm {size.item()}); "
            f"lower train.lr_net / train.lr_policy or the lambdas"
        )


def keep_if_best(state: TrainState, cfg: Config, record: EpochRecord) -> None:
    """Early stopping's bookkeeping: remember the best epoch's weights, count the epochs since."""
    if record.epoch < min(cfg.train.lambda_s_warmup, cfg.train.max_epochs):
        return  # during the warm-up the rate is not yet pulled to tau: not a model to keep
    if record.valid_error < state.best_error:
        state.best_error, state.stale, state.result.best_epoch = record.valid_error, 0, record.epoch
        state.best_state = copy.deepcopy(state.model.state_dict())
    else:
        state.stale += 1


def train(
    cfg: Config,
    splits: Splits,
    on_batch: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    workdir: Path | None = None,
) -> TrainResult:
    """Train a model as `cfg` says. on_batch(done, total) and on_epoch(record) report progress.

    With `workdir`, every finished epoch is logged to workdir/metrics.jsonl and the full training state
    saved to workdir/train_state.pt; if that state exists when training starts, training continues from
    it and ends bit-identical (on the same machine) to a run that was never stopped.
    """
    if cfg.train.jitter:  # before any work: the inputs must be images
        image_shape(splits.input_dim, cfg.train.jitter)
    state = TrainState.new(cfg, splits)
    state_file = None if workdir is None else Path(workdir) / TRAIN_STATE
    if state_file is not None and state_file.is_file():
        state.load(state_file)
    teacher = teacher_logits(cfg, splits)
    result = state.result
    # a state saved after early stopping's last epoch has nothing left to train
    last = len(result.history) if state.stale >= cfg.train.patience else cfg.train.max_epochs
    for epoch in range(len(result.history) + 1, last + 1):
        record = train_epoch(state, cfg, splits, epoch, on_batch, teacher)
        result.history.append(record)
        result.train_seconds += record.train_seconds
        keep_if_best(state, cfg, record)
        if workdir is not None:
            lines = "".join(json.dumps(asdict(r)) + "\n" for r in result.history)
            write_atomic(Path(workdir) / EPOCH_LOG, lines)
            state.save(state_file)
        if on_epoch:
            on_epoch(record)
        if state.stale >= cfg.train.patience:
            break
    state.model.load_state_dict(state.best_state)
    state.model.eval()
    return result
