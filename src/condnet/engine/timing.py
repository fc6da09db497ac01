"""Interleaved timing: candidates are timed in turn, repeat after repeat, so drifts of the machine
(frequency, other processes) affect them alike; the median of the repeats is reported."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# the vector extensions that decide the kernels' speed, as /proc/cpuinfo names them
VECTOR_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512 VNNI"}


def machine() -> str:
    """The CPU's name, core count and vector extensions (timings mean little without them)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    vector = ", ".join(label for flag, label in VECTOR_FLAGS.items() if flag in flags) or "none found"
    name = names[0] if names else platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} cores; {vector})"


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


def read_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """GB/s at which one core reads memory: a pass over an array much larger than the caches (the
    engine's NaN test, a vectorized integer test that keeps up with memory), median of `repeats`. At
    small batches and densities the engine's time is bounded by its weights divided by this."""
    import numpy as np

    from condnet.engine.kernels import count_nonfinite

    data = np.ones((megabytes, 2**18), np.float32)
    count_nonfinite(data[:1])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        count_nonfinite(data)
        times.append(time.perf_counter() - start)
    return data.nbytes / statistics.median(times) / 1e9
