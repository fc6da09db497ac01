"""`condnet parity`: a sample of the randomized engine-vs-PyTorch sweep, and proof that it can fail."""

from __future__ import annotations

import numpy as np

from condnet.bench.parity import sweep
from condnet.cli import main
from condnet.engine import kernels


def test_a_sample_of_the_sweep_has_no_mismatch(capsys):
    assert main(["parity", "--cases", "300", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "threshold" in out and "bdnn" in out


def test_the_sweep_finds_a_planted_error(monkeypatch):
    forward_batch = kernels.forward_batch

    def off_by_a_little(*args):
        status, logits = forward_batch(*args)
        return status, logits * np.float32(1.0001)

    monkeypatch.setattr(kernels, "forward_batch", off_by_a_little)
    result = sweep(60, seed=1)
    assert result.mismatches and all("logits differ" in m for m in result.mismatches)
