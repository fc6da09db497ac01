"""The one latency rule (condnet.bench.deployed), by hand, and its users agree."""

from __future__ import annotations

from condnet.bench.deployed import deployed_latency, timing_latency
from condnet.reproduce.frontier import run_latency
from condnet.reproduce.report import credited_latency

TIMING = {"batch1_dense_ms": 0.030, "batch1_engine_ms": 0.012, "batch1_ort_ms": 0.009,
          "test_pass_dense_s": 0.050, "test_pass_engine_s": 0.040}  # fmt: skip


def test_a_dense_net_gets_its_fastest_runtime_and_a_gated_one_the_engine():
    times = {"pytorch": 3.0, "engine": 2.0, "onnxruntime": 1.5}
    assert deployed_latency(times, gated=False) == (1.5, "onnxruntime")
    assert deployed_latency(times, gated=True) == (2.0, "engine")
    no_ort = {"pytorch": 3.0, "engine": 2.5, "onnxruntime": None}
    assert deployed_latency(no_ort, gated=False) == (2.5, "engine")


def test_reproduce_frontier_and_versus_credit_a_run_alike():
    """reproduce's report left ONNX Runtime out (it credited 0.012 ms here); the frontier took it in."""
    assert timing_latency(TIMING, gated=False) == (0.009, "onnxruntime")
    assert run_latency(TIMING, gated=False)[:2] == (0.009, "onnxruntime")
    record = TIMING | {"kind": "nn", "gated": False}
    assert credited_latency(record) == 0.009
    assert credited_latency(TIMING | {"kind": "condnet", "gated": True}) == 0.012
    assert credited_latency(TIMING | {"kind": "condnet", "gated": "True"}) == 0.012  # read back from CSV
