"""The engine probes under docs/ that RESULTS cites read the engine's internals (kernels' views of the
weight buffer, layouts), so a change there can break them without any other test noticing:
docs/batch_split.py divided by zero for a session after `kernels._panels` changed its last argument.
Each runs here on a small net, as RESULTS shows it (a line per timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("batch_split.py", ["4"], "the rest of the whole forward"),
        ("batch1_parts.py", ["64,32,10", "16", "0.5"], "panels (microkernel.c, one example)"),
        ("int8_probe.py", ["256", "16", "1", "4"], "int8:"),
        ("dense_layer_parts.py", ["8,16,10"], "block_layer, tanh:"),
        ("two_threads.py", ["16,8,4", "4"], "engine, 2 thread(s):"),
        ("dense_direct_ab.py", ["8,16,16"], "after / before"),
        ("narrow_product_ab.py", ["40,16,10", "0", "5"], "panels / narrow"),
        ("narrow_product_ab.py", ["40,8,8,3", "4", "7"], "panels / narrow"),
    ],
)
def test_an_engine_probe_runs(script, args, expected):
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout
