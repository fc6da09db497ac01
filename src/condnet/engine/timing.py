"""Interleaved timing: candidates are timed in turn, repeat after repeat, so drifts of the machine
(frequency, other processes) affect them alike; the median of the repeats is reported."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 3):
    """Median wall-clock seconds of one call of each candidate. The order alternates between repeats."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            candidates[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}
