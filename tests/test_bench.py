"""`condnet bench`: the record fields, and the MAC model behind ideal_speedup, on a tiny synthetic model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condnet.bench.compare import synthetic_model
from condnet.cli import main
from condnet.engine import Engine
from condnet.nn.macs import weight_bytes


def test_synthetic_densities_are_exact_at_the_ends_and_close_between():
    model = synthetic_model([30, 64, 64, 5], [8, 8], [1.0, 0.0])
    _, masks = Engine(model).forward(
        np.random.default_rng(0).random((50, 30), dtype=np.float32), "sample", seed=0
    )
    assert masks[0].all() and not masks[1].any()
    model = synthetic_model([30, 640, 5], [8], [0.25])
    _, masks = Engine(model).forward(
        np.random.default_rng(0).random((100, 30), dtype=np.float32), "sample", seed=0
    )
    assert abs(masks[0].mean() - 0.25) < 0.02  # 8,000 draws


def test_bench_json_records(capsys):
    args = ["bench", "--arch", "40,32,16,4", "--block-size", "8,4", "--density", "0.5,1.0"]
    assert main([*args, "--batch", "1,3", "--threads", "1", "--repeats", "2", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert "cores" in output["machine"] and output["memory_gbps"] > 0
    records = output["records"]
    assert [(r["batch"], r["threads"]) for r in records] == [(1, 1), (3, 1)]
    fields = {
        "batch",
        "threads",
        "dense_ms",
        "engine_ms",
        "speedup",
        "ideal_speedup",
        "efficiency",
        "active_fraction",
        "ort_ms",
        "speedup_vs_ort",
        "efficiency_vs_ort",
        "weights_mb",
        "weights_gbps",
        "roofline_ms",
        "bound",
        "of_roofline",
        "footprint_gbps",
        "peak_gmacs",
    }
    for r in records:
        assert set(r) == fields
        assert r["speedup"] == pytest.approx(r["dense_ms"] / r["engine_ms"])
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["ideal_speedup"])
        assert r["speedup_vs_ort"] == pytest.approx(r["ort_ms"] / r["engine_ms"])
        assert r["efficiency_vs_ort"] == pytest.approx(r["speedup_vs_ort"] / r["ideal_speedup"])
        assert r["active_fraction"][1] == 1.0
        # ideal speedup by hand: dense 40*32 + 32*16 + 16*4 = 1856 MACs; active, with a = layer 1's
        # active fraction: layer 1 40*32a (+ policy 40*4), layer 2 32a*16 (+ policy 32a*4), output 16*4
        a = r["active_fraction"][0]
        active = 40 * 32 * a + 40 * 4 + 32 * a * 16 + 32 * a * 4 + 16 * 4
        assert r["ideal_speedup"] == pytest.approx(1856 / active, rel=1e-6)
        assert r["weights_gbps"] == pytest.approx(r["weights_mb"] / r["engine_ms"])
        assert 0 < r["weights_mb"] <= 4 * (1856 + 40 * 4 + 32 * 4) / 1e6
        # the roofline by hand: weights over the bandwidth, or the batch's MACs over the peak
        memory_ms = r["weights_mb"] / r["footprint_gbps"]
        compute_ms = active * r["batch"] / r["peak_gmacs"] / 1e6
        assert r["roofline_ms"] == pytest.approx(max(memory_ms, compute_ms))
        assert r["bound"] == ("memory" if memory_ms >= compute_ms else "compute")
        assert r["of_roofline"] == pytest.approx(r["roofline_ms"] / r["engine_ms"])
        assert r["footprint_gbps"] > 1 and r["peak_gmacs"] > 1


def test_weight_bytes_counts_each_needed_tile_once():
    """By hand: input 6 (one block), layer 1 of 3 blocks of 2 with a 3-row policy, layer 2 of 2 blocks
    of 1 with a 2-row policy, 4 classes."""
    first = [[1, 0, 0], [1, 0, 1]]  # blocks 0 and 2 of layer 1 needed
    second = [[0, 0], [1, 0]]  # tiles (0, 0), (0, 2): example 1; example 0 needs none
    expected = 6 * 3  # layer 1's policy over the whole input
    expected += 2 * 6 * 2  # two of layer 1's 2 x 6 tiles
    expected += 2 * 2 * 2  # layer 2's policy over the input blocks some example has on (0 and 2)
    expected += 2 * 1 * 2  # layer 2's tiles (0, 0) and (0, 2), 1 x 2 each
    expected += 1 * 1 * 4  # the output over layer 2's block 0, the only one on
    assert weight_bytes(6, [2, 1], 4, [np.array(first), np.array(second)], [3, 2]) == 4 * expected


def test_bench_argument_errors(capsys):
    assert main(["bench", "--arch", "40,32,4", "--density", "0.5,0.5"]) == 2
    assert "one per hidden layer" in capsys.readouterr().err
    assert main(["bench"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


def test_ideal_time_is_the_larger_of_reading_and_computing():
    from condnet.bench.roofline import ideal_ms

    # 2 MB at 20 GB/s: 0.1 ms; 1e6 MACs at 50 GMAC/s: 0.02 ms
    for args, threads, expected_ms, bound in [
        ((2e6, 1e6, 20.0, 50.0), 1, 0.1, "memory"),
        ((2e6, 1e7, 20.0, 50.0), 1, 0.2, "compute"),
        ((2e6, 1e7, 20.0, 50.0), 2, 0.1, "compute"),
    ]:
        ms, found = ideal_ms(*args, threads=threads)
        assert ms == pytest.approx(expected_ms) and found == bound


def test_bench_times_every_runtime_with_subnormals_flushed(monkeypatch):
    """While the runtimes are timed a subnormal product is 0 (FTZ/DAZ); afterwards it is not."""
    from condnet.bench import compare

    tiny = np.float32(1e-38)  # normal; half of it is subnormal
    seen, timed = [], compare.interleaved_medians

    def probe(runners, repeats):
        seen.append(tiny * np.float32(0.5))
        return timed(runners, repeats)

    monkeypatch.setattr(compare, "interleaved_medians", probe)
    model = synthetic_model([12, 8, 3], [4], [0.5])
    inputs = np.random.default_rng(0).random((8, 12), dtype=np.float32)
    compare.bench(model, inputs, [1, 4], [1], repeats=1)
    assert len(seen) == 2 and all(value == 0 for value in seen)
    assert tiny * np.float32(0.5) > 0


def test_measured_bandwidth_and_peak_are_plausible():
    from condnet.bench.roofline import int8_peak_gmacs, peak_gmacs
    from condnet.engine.timing import read_bandwidth_at

    assert 1 < read_bandwidth_at(2**20, repeats=3) < 1000  # GB/s
    assert 1 < peak_gmacs(128, repeats=3) < 10_000  # GMAC/s
    assert 1 < int8_peak_gmacs(128, repeats=3) < 40_000


def test_bench_times_the_bf16_engine_and_counts_its_bytes(capsys):
    """--weights bf16: the record's weights are the fp32 run's tiles at 2 bytes and its policies at 4."""
    args = ["bench", "--arch", "40,32,4", "--block-size", "8", "--density", "1.0", "--batch", "1",
            "--repeats", "1", "--json"]  # fmt: skip
    reads = {}
    for weights in ("fp32", "bf16"):
        assert main([*args, "--weights", weights]) == 0
        output = json.loads(capsys.readouterr().out)
        assert output["weights"] == weights
        reads[weights] = output["records"][0]["weights_mb"] * 1e6
    # every block on: policy 40 x 4 rows (float32); tiles 40 x 32 and 32 x 4
    assert reads["fp32"] == pytest.approx(4 * (40 * 4 + 40 * 32 + 32 * 4))
    assert reads["bf16"] == pytest.approx(4 * 40 * 4 + 2 * (40 * 32 + 32 * 4))
