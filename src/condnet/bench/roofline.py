"""The roofline of a benchmark record: the least time the engine could take on this machine, from the
bytes of weights it must read and the multiply-adds it must do, each over what one core was measured to
sustain. The bandwidth is measured at the model's own footprint (`engine.timing.read_bandwidth_at`):
repeated calls keep its weights in whichever cache holds them (on a 32 MiB L3, a 10 MB model streams at
L3 speed, not memory's). The peak is a tuned matrix product's (PyTorch's, one thread), not the
engine's, so the fraction shows what the engine leaves on the table."""

from __future__ import annotations

import statistics
import time


def peak_gmacs(size: int = 1024, repeats: int = 7) -> float:
    """Billions of multiply-adds a second of one core in a tuned float32 matrix product (PyTorch's
    torch.mm, one thread, size x size x size; at 512 its own overheads cost a quarter)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.rand(size, size), torch.rand(size, size)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return size**3 / statistics.median(times) / 1e9


def ideal_ms(weight_bytes: float, macs: float, bandwidth_gbps: float, peak: float, threads: int = 1):
    """(ms, bound): the larger of the time to read `weight_bytes` and to do `macs` multiply-adds, with
    `threads` cores each at one core's measured bandwidth and peak; bound is "memory" or "compute"."""
    memory = weight_bytes / (bandwidth_gbps * 1e9 * threads) * 1e3
    compute = macs / (peak * 1e9 * threads) * 1e3
    return (memory, "memory") if memory >= compute else (compute, "compute")
