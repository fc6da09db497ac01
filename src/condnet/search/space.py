"""A search space: a base config, fixed overrides, and the parameters Optuna chooses.

SPACE.toml:

    name = "mnist-dense"                      # the study's name in the storage
    config = "../configs/mnist_condnet.toml"  # optional base config, relative to this file
    set = ["model.kind=nn", "train.max_epochs=30"]
    seed = 0                                  # the training seed of every trial (and the sampler's)

    [params]
    "model.widths" = { choices = [[64], [128], [64, 64]] }     # any TOML values
    "train.lr_net" = { low = 1e-4, high = 3e-3, log = true }  # a float range
    "model.block_size" = { low = 8, high = 64, step = 8 }      # whole numbers: an integer range

Every combination is checked as a config when it is drawn; a bad space fails before any training
(`check`, which resolves the lowest, highest and first choices).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condnet.config import Config, load_config
from condnet.errors import ConfigError


@dataclass
class Param:
    key: str  # a config key, e.g. train.lr_net
    choices: list[Any] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | None = None

    def suggest(self, trial) -> Any:
        """Optuna's choice for this trial (choices are stored as JSON text: Optuna's categorical
        values must be scalars, ours may be lists)."""
        if self.choices is not None:
            text = trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices])
            return json.loads(text)
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def extremes(self) -> list[Any]:
        return self.choices if self.choices is not None else [self.low, self.high]


@dataclass
class Space:
    name: str
    path: Path
    base: Path | None
    fixed: list[str] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    seed: int = 0

    def config(self, values: dict[str, Any]) -> Config:
        """The resolved config of a trial whose parameters take `values`."""
        overrides = [f"{key}={json.dumps(value)}" for key, value in values.items()]
        return load_config(self.base, [*self.fixed, *overrides], self.seed)

    def check(self) -> None:
        """Resolve the config at each parameter's ends (others at their first value): fail early."""
        first = {p.key: p.extremes()[0] for p in self.params}
        for param in self.params:
            for value in param.extremes():
                try:
                    self.config({**first, param.key: value})
                except ConfigError as exc:
                    raise ConfigError(
                        f"{self.path}: [params] {param.key} = {value!r} gives a bad config: {exc}"
                    ) from None


def _param(where: str, key: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: {key} must be a table, e.g. {{ choices = [...] }} or {{ low = .., high = .. }}"
        )
    unknown = set(spec) - {"choices", "low", "high", "log", "step"}
    if unknown:
        raise ConfigError(
            f"{where}: {key} has unknown fields {sorted(unknown)}; allowed: choices, low, high, log, step"
        )
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"] or set(spec) != {"choices"}:
            raise ConfigError(f"{where}: {key}.choices must be a non-empty list, alone")
        return Param(key, choices=spec["choices"])
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or low >= high or (spec.get("log") and low <= 0):
        raise ConfigError(f"{where}: {key} needs numbers low < high (and low > 0 with log = true)")
    step = spec.get("step")
    if step is not None and (not isinstance(step, int) or step < 1 or not isinstance(low, int)):
        raise ConfigError(f"{where}: {key}.step is for whole-number ranges: a whole number >= 1")
    return Param(key, low=low, high=high, log=bool(spec.get("log", False)), step=step)


def load_space(path: str | Path) -> Space:
    """Read and check SPACE.toml; ConfigError names what to fix."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"search space {path} {what}: give a SPACE.toml file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"search space {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"name", "config", "set", "seed", "params"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: name, config, set, seed, params")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(f'{path}: give the study a name (name = "...")')
    base = path.parent / raw["config"] if raw.get("config") else None
    fixed = raw.get("set", [])
    if not isinstance(fixed, list) or not all(isinstance(s, str) for s in fixed):
        raise ConfigError(f'{path}: set must be a list of "key=value" strings')
    params = [_param(str(path), key, spec) for key, spec in raw.get("params", {}).items()]
    if not params:
        raise ConfigError(f"{path}: [params] is empty: nothing to search")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{path}: seed must be a whole number >= 0")
    space = Space(raw["name"], path, base, fixed, params, seed)
    space.check()
    return space
