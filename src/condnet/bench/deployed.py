"""The one rule for the latency a net is credited with, used by every report (reproduce, frontier,
search, versus): what its user would deploy. A gated net runs in the engine (nothing else skips its
blocks); a dense net in the fastest of PyTorch, the engine and ONNX Runtime, so that the baseline is
never handicapped by a slow runtime. Times are measured on one core (DEFAULT_THREADS)."""

from __future__ import annotations

DEFAULT_THREADS = 1  # every latency of a report: one core, nothing else running


def deployed_latency(times: dict[str, float | None], gated: bool) -> tuple[float, str]:
    """(the credited time, the runtime that gave it). times: {"pytorch", "engine", "onnxruntime"} ->
    the same measure in each (None or missing: not measured)."""
    if gated:
        return times["engine"], "engine"
    measured = {name: value for name, value in times.items() if value is not None}
    fastest = min(measured, key=measured.get)
    return measured[fastest], fastest


def timing_latency(timing: dict, gated: bool) -> tuple[float, str]:
    """deployed_latency of a run's timing.json (batch-1 ms; batch1_ort_ms absent in older files)."""
    times = {"pytorch": timing["batch1_dense_ms"], "engine": timing["batch1_engine_ms"],
             "onnxruntime": timing.get("batch1_ort_ms")}  # fmt: skip
    return deployed_latency(times, gated)
