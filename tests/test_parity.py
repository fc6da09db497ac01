"""`condnet parity`: a sample of the randomized engine-vs-PyTorch sweep, and proof that it can fail."""

from __future__ import annotations

import numpy as np

from condnet.bench.parity import sweep
from condnet.cli import main
from condnet.engine.engine import Engine


def test_a_sample_of_the_sweep_has_no_mismatch(capsys):
    assert main(["parity", "--cases", "300", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "threshold" in out and "bdnn" in out


def test_the_sweep_finds_a_planted_error(monkeypatch):
    block_product = Engine._block_product

    def off_by_a_little(self, layer, h, in_mask, out_mask):
        return block_product(self, layer, h, in_mask, out_mask) * np.float32(1.0001)

    monkeypatch.setattr(Engine, "_block_product", off_by_a_little)
    result = sweep(60, seed=1)
    assert result.mismatches and all("logits differ" in m for m in result.mismatches)
