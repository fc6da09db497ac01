"""Choosing configs from finished searches, on validation only: each complete trial read from its study
(a journal file or a database, never written to), the Pareto set of (validation error, batch-1
latency), and a trial's dense rival (the dense trial with the lowest validation error among those at
most as slow). Each trial's resolved config is kept in the study itself, so a choice needs no run
directory: runs stay on the machine that trained them, and a machine can be lost with them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from condnet.config import Config, from_dict, with_overrides
from condnet.search.study import open_study


@dataclass(frozen=True)
class Trial:
    space: str  # a short name for the search space, used in the trial's name
    number: int
    valid_error: float
    b1_latency_us: float  # the search's timing (beside other work: noisy)
    config: str  # the resolved config, TOML
    share_entropy_bits: tuple[float, ...] | None = None  # per gated layer (search.study); None: not kept

    @property
    def name(self) -> str:
        return f"{self.space}_trial{self.number}"

    def resolved(self, overrides: list[str] = ()) -> Config:
        """The trial's config, with `--set` overrides (e.g. distillation) applied."""
        return with_overrides(from_dict(tomllib.loads(self.config)), list(overrides))


def complete_trials(storage: str | Path, study_name: str, space: str) -> list[Trial]:
    """The study's complete trials, by number."""
    study = open_study(storage, study_name)
    return [
        Trial(space, t.number, t.values[0], t.values[1], t.user_attrs["config"], _entropies(t.user_attrs))
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE"
    ]


def _entropies(attrs: dict) -> tuple[float, ...] | None:
    """A trial's load entropies (condnet.search.study keeps them for gated trials since 2026-12-05)."""
    found = attrs.get("share_entropy_bits")
    return None if found is None else tuple(found)


def pareto(trials: list[Trial]) -> list[Trial]:
    """The trials no other trial beats on both objectives, fastest first."""
    front, best = [], float("inf")
    for t in sorted(trials, key=lambda t: (t.b1_latency_us, t.valid_error)):
        if t.valid_error < best:
            front.append(t)
            best = t.valid_error
    return front


def rival_of(trial: Trial, dense: list[Trial]) -> Trial | None:
    """The dense trial with the lowest validation error among those at most as slow as `trial`."""
    rivals = [d for d in dense if d.b1_latency_us <= trial.b1_latency_us]
    return min(rivals, key=lambda d: d.valid_error, default=None)


def gap(trial: Trial, dense: list[Trial]) -> float:
    """The trial's validation error minus its rival's (1.0 when no dense trial is as fast)."""
    rival = rival_of(trial, dense)
    return trial.valid_error - (rival.valid_error if rival else 1.0)


def front_picks(
    dense: list[Trial], gated: list[list[Trial]], per_space: int = 1, dense_step: int = 1
) -> tuple[list[Trial], list[Trial]]:
    """(gated picks, dense picks) for a frontier. Gated: each space's `per_space` Pareto trials nearest
    the dense front (smallest gap: the candidates for a point on it). Dense: every `dense_step`-th point
    of the dense Pareto set over its whole range (the slowest always), each gated pick's rival, and the
    dense front's next point above each pick (search-time latencies are noisy: timed again, it may be
    as fast), fastest first."""
    chosen = [t for space in gated for t in sorted(pareto(space), key=lambda t: gap(t, dense))[:per_space]]
    front = pareto(dense)
    rivals = [rival for t in chosen if (rival := rival_of(t, dense))]
    above = [a for t in chosen if (a := next((d for d in front if d.b1_latency_us > t.b1_latency_us), None))]
    dense_chosen = {t.number: t for t in [*front[::dense_step], *front[-1:], *rivals, *above]}
    return chosen, sorted(dense_chosen.values(), key=lambda t: (t.b1_latency_us, t.number))
