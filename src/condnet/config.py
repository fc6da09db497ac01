"""Experiment configuration: dataclasses, TOML loading, `key=value` overrides and validation.

A config file has three tables, `[model]`, `[train]` and `[data]`, plus a top-level `seed`.
Every field is checked up front; an error names the field, the value given and what is allowed.
Per-layer fields (`block_size`, `tau`, `lr_policy`) take one value for every hidden layer or a
list with one value per hidden layer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condnet import gates
from condnet.errors import ConfigError

MODEL_KINDS = ("condnet", gates.DENSE_KIND, gates.UNIFORM_KIND)
ACTIVATIONS = ("tanh", "relu")
OPTIMIZERS = ("sgd", "adam")
BASELINES = ("none", "batch_min", "batch_mean", "leave_one_out", "moving_average")
REDUCTIONS = ("sum", "mean")
ESTIMATORS = ("reinforce", "straight_through", "gumbel")
DATASETS = ("mnist", "cifar10", "svhn", "idx")
SCHEDULES = ("constant", "cosine")
MODES = ("sample", "threshold")  # how a trained model decides its masks at test time


@dataclass
class ModelConfig:
    kind: str = "condnet"  # condnet (learned policy) | nn (dense) | bdnn (uniform random block policy)
    widths: list[int] = field(default_factory=lambda: [256])  # hidden layer widths
    block_size: list[int] = field(default_factory=lambda: [16])  # units per block, per hidden layer
    activation: str = "tanh"
    tau: list[float] = field(default_factory=lambda: [1 / 16])  # target rate; bdNN's block rate
    p_min: float = 0.01  # policy probabilities are squashed into [p_min, p_max]
    p_max: float = 0.99
    dropout: float = 0.0  # unit dropout of every hidden layer's output during training (gated too)
    # per hidden layer: gated by its policy (condnet, bdnn) or dense; for instance [false, true] is a
    # dense trunk whose output routes a wide gated layer. The dense NN (kind nn) has no gated layer.
    gated: list[bool] = field(default_factory=lambda: [True])
    # how a gated layer of a condnet picks its blocks, one of condnet.gates.routers(): bernoulli (the
    # paper's policy, one draw per block), topk (exactly k blocks per example, scaled by their gate
    # values), switch (top-k's blocks scaled by their probability among all blocks), balanced_switch
    # (switch, its training batches shared out evenly among the blocks), tree (one block per
    # example, chosen by a binary tree of decision units; blocks per layer a power of 2)... Each gate is
    # a file of condnet/gates/ (its settings) and condnet/nn/gates/.
    router: str = "bernoulli"
    k: list[int] = field(default_factory=lambda: [1])  # blocks on per example, per layer (topk, ...)

    @property
    def is_gated(self) -> bool:
        """Whether some hidden layer decides its blocks per example (not a dense net)."""
        return gates.is_gated(self)

    @property
    def has_threshold_mode(self) -> bool:
        """False when a gate reads no input (bdNN's uniform rate), so that thresholding means nothing."""
        return gates.has_threshold_mode(self)

    router_detach: bool = True  # the policy / router reads the previous layer detached (the paper)
    # what every gate's scores read (condnet.gates.router_view): "layer" (the layer's own input, the
    # paper), "input" (the network's input, for every layer), "poolS" (the input image average-
    # pooled to S x S per channel, computed once per example: a cheap view for routers of wide layers)
    # or "projR" (one learned projection of the input to R values, shared by every gate)
    router_input: str = "layer"


@dataclass
class TrainConfig:
    optimizer: str = "sgd"
    lr_net: float = 1e-3
    lr_policy: list[float] = field(default_factory=lambda: [5e-5])
    batch_size: int = 128
    loss_reduction: str = "sum"  # sum: the authors' code (per-example terms summed over the batch)
    lambda_s: float = 200.0  # weight of L_b + L_e (eqs. 5, 6)
    # not in the paper: lambda_s rises linearly from 0 over this many epochs (0 = off), so that the
    # policies become input-dependent before the rate is pulled down to tau
    lambda_s_warmup: float = 0.0
    lambda_v: float = 200.0  # weight of L_v (eq. 7)
    lambda_balance: float = 0.01  # weight of the routers' load-balancing loss (top-k, tree; not in the paper)
    # tree routers (not in the paper): the first tree_soft_epochs epochs train a soft mixture of every
    # leaf weighted by its path probability (then the hard path, as at inference), and lambda_harden
    # weighs the entropy of the leaf probabilities, which pushes the decisions to be firm
    tree_soft_epochs: int = 0
    lambda_harden: float = 0.0
    lambda_l2: float = 0.005
    baseline: str = "none"  # REINFORCE baseline b (eq. 4): none is the paper
    baseline_momentum: float = 0.9  # for baseline = "moving_average"
    max_epochs: int = 100
    patience: int = 10  # epochs without a better validation error before stopping
    eval_batch_size: int = 500
    # not in the paper: how the gates' gradient is estimated (reinforce: the paper's; straight_through
    # and gumbel let the task loss reach the policies, see condnet.nn.condnet and train/objective.py)
    estimator: str = "reinforce"
    gumbel_temperature: list[float] = field(default_factory=lambda: [1.0, 0.1])  # first, last epoch
    # distillation from a finished run (any kind): soft targets on the logits, weight and temperature
    teacher: str = ""
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
    # a checkpoint directory (a finished run, or `condnet sparsify`'s converted model) whose weights
    # start the training instead of the random initialisation; its [model] must be this config's
    init: str = ""
    # not in the paper (issue 19: every search space, dense and gated, searches them): the learning
    # rates follow `schedule` (constant, or cosine to 0 at max_epochs) after a linear warm-up from 0 over
    # warmup_epochs; weight_decay is decoupled (AdamW's; SGD's own) and applies to the network's weights
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    # not in the paper: each training example shifted by up to `jitter` pixels in each direction (images
    # of 1 or 3 square channels; zeros come in at the border), a new shift every epoch: the input jitter
    # of a strong teacher (issue 19)
    jitter: int = 0


@dataclass
class DataConfig:
    name: str = "mnist"  # mnist | cifar10 | svhn | idx (any MNIST-format dataset in `dir`)
    dir: str = ""  # local directory with the dataset's files (also $CONDNET_DATA_DIR for mnist)
    valid_size: int = 10000  # the last `valid_size` training examples are the validation split
    cache_dir: str = ""  # where fetched files are kept (default: $CONDNET_CACHE_DIR or ~/.cache/condnet)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0

    @property
    def n_hidden(self) -> int:
        return len(self.model.widths)


PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"  # shipped with the package


def find_config(path: str | Path) -> Path:
    """A config file: `path` itself, else a config shipped with condnet by that name (default.toml,
    frontier/mnist_best.toml; ".toml" may be left out)."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    for candidate in (PACKAGED_CONFIGS / path, PACKAGED_CONFIGS / f"{path}.toml"):
        if candidate.is_file():
            return candidate
    return path


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}
PER_LAYER = {("model", "block_size"), ("model", "k"), ("model", "tau"), ("train", "lr_policy")}


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from nested dicts (the parsed TOML)."""
    cfg = Config()
    for key, value in raw.items():
        if key == "seed":
            cfg.seed = value
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"'{key}' must be a table ([{key}]), got {value!r}")
            for name, item in value.items():
                set_value(cfg, f"{key}.{name}", item)
        else:
            raise ConfigError(f"unknown top-level key '{key}'; allowed: seed, {', '.join(SECTIONS)}")
    return validate(cfg)


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set `section.name` on cfg, refusing unknown names (validation happens in `validate`)."""
    if dotted == "seed":
        cfg.seed = value
        return
    section, _, name = dotted.partition(".")
    if section not in SECTIONS or not name:
        raise ConfigError(f"unknown key '{dotted}'; keys look like model.tau, train.lr_net, data.dir or seed")
    allowed = _fields(SECTIONS[section])
    if name not in allowed:
        raise ConfigError(f"unknown key '{dotted}'; allowed in [{section}]: {', '.join(allowed)}")
    setattr(getattr(cfg, section), name, value)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `--set key=value`; the value is read as TOML (so 1e-3, [16, 32], "adam" all work)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (for example train.lr_net=0.01), got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word such as adam or relu
    return key.strip(), parsed


def load_config(path: str | Path | None, overrides: list[str] = (), seed: int | None = None) -> Config:
    """Read a TOML config (or the built-in defaults when path is None), apply overrides and seed."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = find_config(path)
        if path.is_dir():
            raise ConfigError(f"config file {path} is a directory; give a TOML file")
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist (nor is it a config shipped with condnet: see "
                f"{PACKAGED_CONFIGS})"
            )
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not text (TOML is UTF-8); give a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from None
    _apply_overrides(raw, overrides)
    if seed is not None:
        raw["seed"] = seed
    return from_dict(raw)


def with_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A copy of cfg with `--set key=value` overrides applied, validated."""
    raw = to_dict(cfg)
    _apply_overrides(raw, overrides)
    return from_dict(raw)


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    for text in overrides:
        key, value = parse_override(text)
        section, _, name = key.partition(".")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[key] = value


def _per_layer(cfg: Config, section: str, name: str, kind: type) -> None:
    obj = getattr(cfg, section)
    value = getattr(obj, name)
    n = cfg.n_hidden
    values = value if isinstance(value, list) else [value]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ConfigError(
            f"{section}.{name}: got {value!r}, a list of {len(values)} values for {n} hidden layers; "
            f"give one value or one per hidden layer"
        )
    setattr(obj, name, [_number(f"{section}.{name}", v, kind) for v in values])


def _number(where: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: got {value!r}; allowed: a number")
    if kind is int:
        if value != int(value):
            raise ConfigError(f"{where}: got {value!r}; allowed: a whole number")
        return int(value)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: got {value!r}; allowed: a finite number")
    return float(value)


def _choice(where: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: got {value!r}; allowed: {', '.join(allowed)}")


def _check(where: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: got {value!r}; allowed: {allowed}")


def validate(cfg: Config) -> Config:
    """Normalise per-layer fields to lists and check every value; raise ConfigError naming the field."""
    m, t, d = cfg.model, cfg.train, cfg.data
    cfg.seed = _number("seed", cfg.seed, int)
    _check("seed", cfg.seed, 0 <= cfg.seed < 2**63, "a whole number from 0 to 2^63 - 1")

    _choice("model.kind", m.kind, MODEL_KINDS)
    _choice("model.activation", m.activation, ACTIVATIONS)
    widths = m.widths if isinstance(m.widths, list) else [m.widths]
    _check("model.widths", m.widths, len(widths) >= 1, "a list of positive whole numbers")
    m.widths = [_number("model.widths", w, int) for w in widths]
    _check("model.widths", m.widths, all(w > 0 for w in m.widths), "a list of positive whole numbers")
    for section, name in sorted(PER_LAYER):
        _per_layer(cfg, section, name, int if name in ("block_size", "k") else float)
    for layer, (width, size) in enumerate(zip(m.widths, m.block_size, strict=True)):
        _check(
            f"model.block_size[{layer}]",
            size,
            size > 0 and width % size == 0,
            f"a positive divisor of the layer width {width}",
        )
    gated = m.gated if isinstance(m.gated, list) else [m.gated]
    gated = gated * cfg.n_hidden if len(gated) == 1 else gated
    _check("model.gated", m.gated, len(gated) == cfg.n_hidden and all(isinstance(g, bool) for g in gated),
           "true or false, one value or one per hidden layer")  # fmt: skip
    m.gated = gated
    _choice("model.router", m.router, gates.routers())
    routed = m.kind not in gates.NOT_ROUTED
    _check("model.router", m.router, routed or m.router == ModelConfig.router,
           f"{ModelConfig.router} (the default) unless model.kind = condnet, the routed kind")  # fmt: skip
    _check("model.router_detach", m.router_detach, isinstance(m.router_detach, bool), "true or false")
    _check("model.router_input", m.router_input, gates.view_kind(m.router_input) is not None,
           'layer, input, poolS or projR, S and R whole numbers >= 1 (e.g. "pool7", "proj16")')  # fmt: skip
    for layer, k in enumerate(m.k):
        _check(f"model.k[{layer}]", k, k >= 1, "a whole number >= 1 (blocks)")
    for layer in range(cfg.n_hidden):
        gates.gate_of(m, 0, layer).check()  # each gate checks the settings it reads
    for tau in m.tau:
        _check("model.tau", m.tau, 0 < tau <= 1, "numbers in (0, 1], one or one per hidden layer")
    _number("model.p_min", m.p_min, float)
    _number("model.p_max", m.p_max, float)
    _check("model.p_min", m.p_min, 0 < m.p_min < 0.5, "a number in (0, 0.5)")
    _check("model.p_max", m.p_max, 0.5 < m.p_max < 1, "a number in (0.5, 1)")
    m.dropout = _number("model.dropout", m.dropout, float)
    _check("model.dropout", m.dropout, 0 <= m.dropout < 1, "a number in [0, 1)")

    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.baseline", t.baseline, BASELINES)
    _choice("train.loss_reduction", t.loss_reduction, REDUCTIONS)
    t.lr_net = _number("train.lr_net", t.lr_net, float)
    _check("train.lr_net", t.lr_net, t.lr_net > 0, "a number > 0")
    _check("train.lr_policy", t.lr_policy, all(lr >= 0 for lr in t.lr_policy), "numbers >= 0")
    for name in ("lambda_s", "lambda_v", "lambda_l2", "lambda_s_warmup", "lambda_balance", "lambda_harden"):
        value = _number(f"train.{name}", getattr(t, name), float)
        _check(f"train.{name}", value, value >= 0, "a number >= 0")
        setattr(t, name, value)
    t.baseline_momentum = _number("train.baseline_momentum", t.baseline_momentum, float)
    _check("train.baseline_momentum", t.baseline_momentum, 0 <= t.baseline_momentum < 1, "a number in [0, 1)")
    for name in ("batch_size", "max_epochs", "eval_batch_size"):
        value = _number(f"train.{name}", getattr(t, name), int)
        _check(f"train.{name}", value, value >= 1, "a whole number >= 1")
        setattr(t, name, value)
    t.tree_soft_epochs = _number("train.tree_soft_epochs", t.tree_soft_epochs, int)
    _check("train.tree_soft_epochs", t.tree_soft_epochs, t.tree_soft_epochs >= 0, "a whole number >= 0")
    t.patience = _number("train.patience", t.patience, int)
    _check("train.patience", t.patience, t.patience >= 1, "a whole number >= 1")
    _choice("train.estimator", t.estimator, ESTIMATORS)
    _choice("train.schedule", t.schedule, SCHEDULES)
    for name in ("warmup_epochs", "weight_decay"):
        value = _number(f"train.{name}", getattr(t, name), float)
        _check(f"train.{name}", value, value >= 0, "a number >= 0")
        setattr(t, name, value)
    _check("train.warmup_epochs", t.warmup_epochs, t.warmup_epochs < t.max_epochs or t.warmup_epochs == 0,
           f"fewer epochs than train.max_epochs ({t.max_epochs})")  # fmt: skip
    temps = t.gumbel_temperature if isinstance(t.gumbel_temperature, list) else [t.gumbel_temperature]
    t.gumbel_temperature = [_number("train.gumbel_temperature", v, float) for v in temps]
    _check("train.gumbel_temperature", temps, len(temps) == 2 and min(t.gumbel_temperature) > 0,
           "[first, last]: two numbers > 0 (annealed geometrically over the epochs)")  # fmt: skip
    _check("train.teacher", t.teacher, isinstance(t.teacher, str), "a finished run directory (string)")
    t.distill_weight = _number("train.distill_weight", t.distill_weight, float)
    _check("train.distill_weight", t.distill_weight, 0 <= t.distill_weight <= 1, "a number in [0, 1]")
    _check("train.distill_weight", t.distill_weight, t.distill_weight == 0 or bool(t.teacher),
           "0 unless train.teacher names a finished run")  # fmt: skip
    _check("train.init", t.init, isinstance(t.init, str), "a checkpoint directory (string)")
    t.distill_temperature = _number("train.distill_temperature", t.distill_temperature, float)
    _check("train.distill_temperature", t.distill_temperature, t.distill_temperature > 0, "a number > 0")
    t.jitter = _number("train.jitter", t.jitter, int)
    _check("train.jitter", t.jitter, t.jitter >= 0, "a whole number of pixels >= 0")
    _check("train.jitter", t.jitter, t.jitter == 0 or t.distill_weight == 0,
           "0 when distilling (the teacher's targets are computed once, on unshifted images)")  # fmt: skip

    _choice("data.name", d.name, DATASETS)
    for name in ("dir", "cache_dir"):
        _check(f"data.{name}", getattr(d, name), isinstance(getattr(d, name), str), "a path (string)")
    _check(
        "data.dir", d.dir, d.name != "idx" or bool(d.dir), "a directory with IDX files when data.name = idx"
    )
    d.valid_size = _number("data.valid_size", d.valid_size, int)
    _check("data.valid_size", d.valid_size, d.valid_size >= 1, "a whole number >= 1")
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    return {"seed": cfg.seed, **{name: dataclasses.asdict(getattr(cfg, name)) for name in SECTIONS}}


def toml_string(text: str) -> str:
    """A TOML basic string that reads back as `text` (backslashes, quotes and control characters
    escaped; JSON's escapes are TOML's, and TOML wants DEL escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


# Settings added after runs and searches existed, written only when they differ from their default:
# a run's config text is its identity (a search names a trial's directory by its hash, a training state
# is resumed only under the same text), which a new setting left at its default must not change.
ADDED_LATER = {("train", "jitter"): 0}
_UNSET = object()


def to_toml(cfg: Config) -> str:
    """The fully resolved configuration as TOML (read back by `load_config` to the same Config)."""
    data = to_dict(cfg)
    lines = [f"seed = {data.pop('seed')}"]
    for section, values in data.items():
        kept = [(k, v) for k, v in values.items() if ADDED_LATER.get((section, k), _UNSET) != v]
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in kept]
    return "\n".join(lines) + "\n"
