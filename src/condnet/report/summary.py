"""Tables over finished runs: one row per run, and mean +- std over the seeds of each configuration."""

from __future__ import annotations

import json
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path

from condnet.errors import CondnetError
from condnet.run_dir import CONFIG, RunDir


@dataclass
class RunRecord:
    path: Path
    metrics: dict
    analysis: dict
    config: dict

    @property
    def config_without_seed(self) -> str:
        return json.dumps({k: v for k, v in self.config.items() if k != "seed"}, sort_keys=True)


def read_run(run_dir: str | Path) -> RunRecord:
    run = RunDir(run_dir)
    run_dir = run.require_finished()
    try:
        config = tomllib.loads((run_dir / CONFIG).read_text())
        return RunRecord(run_dir, run.metrics(), run.analysis(), config)
    except FileNotFoundError as exc:
        raise CondnetError(f"{run_dir} is not a whole run ({Path(exc.filename).name} is missing)") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CondnetError(f"{run_dir} holds a corrupt record: {exc}") from None


def group_by_config(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """Runs that differ only by their seed, in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.config_without_seed, []).append(run)
    return list(groups.values())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
