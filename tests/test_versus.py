"""`condnet versus`: a slow spell of the machine while one contender is timed must not flip the verdict
(on a shared VM, `make run` once read "neither dominates" where three reruns read "dominated")."""

from __future__ import annotations

from pathlib import Path

from condnet.reproduce import versus as versus_module


def timing(batch1_ms: float) -> dict:
    return {"batch1_dense_ms": batch1_ms, "batch1_engine_ms": batch1_ms, "batch1_ort_ms": None,
            "test_pass_dense_s": 0.04, "test_pass_engine_s": 0.04}  # fmt: skip


def test_a_slow_spell_during_one_timing_is_outvoted(monkeypatch):
    gated_run, dense_run = Path("gated"), Path("dense")
    steady = {gated_run: 0.015, dense_run: 0.010}  # the dense net is faster, and more accurate below
    calls = []

    def time_run(run_dir, repeats):
        calls.append(run_dir)
        spell = 2.0 if len(calls) == 2 else 1.0  # the machine slows down during the second timing
        return timing(steady[run_dir] * spell)

    monkeypatch.setattr(versus_module, "time_run", time_run)
    monkeypatch.setattr(versus_module, "is_gated", lambda run: run == gated_run)
    monkeypatch.setattr(versus_module, "read_test_error", lambda run: 0.022 if run == gated_run else 0.020)
    gated, dense, verdict = versus_module.versus(gated_run, dense_run, repeats=1)
    assert (gated.latency_us, dense.latency_us) == (15.0, 10.0)  # each the median of its rounds
    assert "dominated" in verdict
    assert calls.count(gated_run) == calls.count(dense_run) >= 3  # timed in turn, several rounds each
