"""Without an extra installed, a command that needs it says which extra to install (no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_without(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`condnet ARGV` in a fresh interpreter where importing `module` fails as if it were not installed."""
    script = (
        f"import sys; sys.modules[{module!r}] = None\n"  # import then raises ModuleNotFoundError
        f"from condnet.cli import main; sys.exit(main({argv!r}))"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("torch", ["train", "--out", "{tmp}/run"], "train"),
        ("torch", ["bench", "--arch", "8,4,2"], "bench"),
        (
            "onnxruntime",
            ["bench", "--arch", "8,4,2", "--block-size", "2", "--repeats", "1", "--batch", "1"],
            "bench",
        ),
    ],
)
def test_a_missing_extra_is_named(module, argv, extra, tmp_path):
    result = run_without(module, [a.format(tmp=tmp_path) for a in argv])
    assert result.returncode == 2, result.stderr
    assert f"pip install 'condnet[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
