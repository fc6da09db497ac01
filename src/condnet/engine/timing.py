"""Interleaved timing: candidates are timed in turn, repeat after repeat, so drifts of the machine
(frequency, other processes) affect them alike; the median of the repeats is reported."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit

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


def _busy_and_own() -> tuple[float, float, float] | None:
    """(seconds the machine's cores were busy since boot, this process's and its waited-for children's
    CPU seconds, wall-clock seconds), or None without Linux's /proc/stat."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    ticks = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = sum(os.times()[:4])
    return busy, own, time.monotonic()


class OtherWork:
    """The cores other processes kept busy while the `with` block ran (the machine's busy time minus
    this process's own, from /proc/stat): unlike the 1-minute load average, it does not count training
    that ended just before the timing started."""

    IDLE = 0.25  # cores: below this, other work was noise (daemons, the shell)

    def __enter__(self):
        self.start = _busy_and_own()
        return self

    def __exit__(self, *exc):
        self.end = _busy_and_own()

    def describe(self, timed: int) -> str:
        """`timed`: how many runs the block timed (none: every run's times are older than the block)."""
        if timed == 0:
            return "nothing timed again (each run's times are from when it was timed)"
        if self.start is None or self.end is None:
            return load_when_timed()
        busy, own, wall = (b - a for a, b in zip(self.start, self.end, strict=True))
        other = max(0.0, busy - own) / max(wall, 1e-9)
        noisy = other >= self.IDLE
        verdict = "other work was running: times are noisy" if noisy else "idle besides the timing"
        return f"other processes kept {other:.2f} of {os.cpu_count()} cores busy while timing ({verdict})"


def load_when_timed() -> str:
    """What else ran while timing ended: the 1-minute load average (Unix) against the cores. A report
    that only said "no training running" could not know it; this measures it."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this OS
        return "system load not measured"
    busy = "idle besides the timing" if load < 1.5 else "other work was running: times are noisy"
    return f"1-minute load average {load:.2f} on {os.cpu_count()} cores when timing ended ({busy})"


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


# one timed sample reads at least this many bytes, so small footprints are timed over many passes
SAMPLE_BYTES = 64 * 2**20


@njit(fastmath=True, cache=True)
def _read_all(values):
    """A vectorized read of every value (fastmath lets LLVM keep several partial sums)."""
    total = np.float32(0.0)
    for i in range(values.shape[0]):
        total += values[i]
    return total


def read_bandwidth_at(nbytes: int, repeats: int = 7) -> float:
    """GB/s at which one core reads an array of `nbytes` (at least 64 KiB) over and over, median of
    `repeats`: the speed of the cache level (or the memory) that holds a working set of that size."""
    values = np.ones(max(nbytes, 2**16) // 4, np.float32)
    passes = max(1, SAMPLE_BYTES // values.nbytes)
    _read_all(values)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(passes):
            _read_all(values)
        times.append((time.perf_counter() - start) / passes)
    return values.nbytes / statistics.median(times) / 1e9


def read_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """GB/s at which one core reads memory: `read_bandwidth_at` an array much larger than the caches. At
    small batches and densities the engine's time is bounded by its weights divided by this."""
    return read_bandwidth_at(megabytes * 2**20, repeats)
