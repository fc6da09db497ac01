"""A kill before every file operation of `train`, `train --force` and `train --resume`, then the recovery a
user is told to make (issue 20): no reader ever sees a partial or mixed run, the advice works the first
time, and the recovered run is bit-identical to one never stopped.

A kill is `os._exit` (no cleanup runs, as with SIGKILL) at the Nth mkdir, file opened for writing,
fsync, rename, unlink or rmtree under the test's directory. CI tries KILL_POINTS random points per
scenario; `CONDNET_KILL_POINTS=all` tries every one (RESULTS section 5 records that run).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from condnet.run_dir import RunDir
from test_training import SMALL

KILL_POINTS = 3
WRAPPER = r"""
import builtins, os, shutil, sys
kill_at, under, count = int(os.environ["KILL_AT"]), os.environ["KILL_UNDER"], [0]
def tick(path=None):
    if path is not None and not os.fspath(path).startswith(under):
        return
    count[0] += 1
    if count[0] == kill_at:
        os._exit(137)
def wrap(module, name, has_path=True):
    original = getattr(module, name)
    def wrapped(*args, **kwargs):
        tick(args[0] if has_path and args and not isinstance(args[0], int) else None)
        return original(*args, **kwargs)
    setattr(module, name, wrapped)
for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
    wrap(os, name)
wrap(os, "fsync", has_path=False)
wrap(shutil, "rmtree")
original_open = builtins.open
def writing_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not isinstance(file, int):
        tick(file)
    return original_open(file, mode, *args, **kwargs)
builtins.open = writing_open
from condnet.cli import main
status = main(sys.argv[1:])
if kill_at == 0:
    print(f"KILL-POINTS {count[0]}", file=sys.stderr)
sys.exit(status)
"""


def condnet(tmp: Path, args: list[str], kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_AT": str(kill_at), "KILL_UNDER": str(tmp), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def train(idx_dir, out: Path, *extra: str) -> list[str]:
    args = ["train", "--out", str(out)]
    for item in [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=2", *extra]:
        args += ["--set", item]
    return args


def model_hash(run: Path) -> str:
    return hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()


SCENARIOS = {  # name: (the state before, the command that is killed)
    "new run": (None, lambda idx, out: train(idx, out)),
    "--force over a finished run": ("old", lambda idx, out: [*train(idx, out), "--force"]),
    "--resume after epoch 1": ("epoch 1", lambda idx, out: ["train", "--resume", str(out)]),
}
AFTER_EPOCH_1 = "import os; from condnet.train import loop; save = loop.TrainState.save\n" + (
    "def exit_after(self, path):\n    save(self, path)\n    os._exit(137)\n"
    "loop.TrainState.save = exit_after\n"
)  # a kill right after epoch 1's state was saved


@pytest.fixture(scope="module")
def references(idx_dir, tmp_path_factory):
    """The uninterrupted runs: the old one (another seed), the new one, and the new one's partial as a
    kill after epoch 1 leaves it."""
    base = tmp_path_factory.mktemp("kill-references")
    old, new, killed = base / "old", base / "new", base / "killed"
    assert condnet(base, [*train(idx_dir, old), "--seed", "7"]).returncode == 0
    assert condnet(base, train(idx_dir, new)).returncode == 0
    env = {**os.environ, "KILL_AT": "0", "KILL_UNDER": str(base)}
    code = AFTER_EPOCH_1 + WRAPPER
    result = subprocess.run([sys.executable, "-c", code, *train(idx_dir, killed)], env=env,
                            capture_output=True)  # fmt: skip
    assert result.returncode == 137 and RunDir(killed).epochs_done() == 1
    return {"old": old, "new": new, "epoch 1": RunDir(killed).partial}


def prepare(tmp: Path, before: str | None, references) -> Path:
    out = tmp / "run"
    if before == "old":
        shutil.copytree(references["old"], out)
    elif before == "epoch 1":
        shutil.copytree(references["epoch 1"], RunDir(out).partial)
    return out


def recover(tmp: Path, out: Path, command: list[str]) -> str:
    """What a user does after the kill: ask `eval`, follow its advice, else run the command again."""
    advice = condnet(tmp, ["eval", str(out)])
    if advice.returncode == 0:
        return "whole"
    resume = re.search(r"`condnet train --resume ([^`]+)`", advice.stderr)
    if resume:
        result = condnet(tmp, ["train", "--resume", resume.group(1)])
        assert result.returncode == 0, f"the advice did not work: {advice.stderr}\n{result.stderr}"
        return "resumed"
    result = condnet(tmp, command)
    assert result.returncode == 0, f"rerunning the command failed after: {advice.stderr}\n{result.stderr}"
    return "rerun"


def kill_points(tmp: Path, scenario: str, references, idx_dir) -> list[int]:
    """The scenario's kill points: every one (CONDNET_KILL_POINTS=all), else KILL_POINTS at random."""
    before, command = SCENARIOS[scenario]
    probe = tmp / "probe"
    probe.mkdir()
    result = condnet(probe, command(idx_dir, prepare(probe, before, references)))
    assert result.returncode == 0, result.stderr
    total = int(re.search(r"KILL-POINTS (\d+)", result.stderr).group(1))
    shutil.rmtree(probe)
    points = list(range(1, total + 1))
    if os.environ.get("CONDNET_KILL_POINTS") != "all":
        points = sorted(random.Random().sample(points, min(KILL_POINTS, total)))
    return points


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_kill_before_any_file_operation_then_the_advised_recovery(scenario, references, idx_dir, tmp_path):
    before, command = SCENARIOS[scenario]
    new, old = model_hash(references["new"]), model_hash(references["old"])
    outcomes = []
    for point in kill_points(tmp_path, scenario, references, idx_dir):
        tmp = tmp_path / f"kill-{point}"
        tmp.mkdir()
        out = prepare(tmp, before, references)
        killed = condnet(tmp, command(idx_dir, out), kill_at=point)
        assert killed.returncode in (0, 137), killed.stderr
        if RunDir(out).is_finished():  # what a reader sees right after the kill: a whole run, old or new
            assert condnet(tmp, ["eval", str(out)]).returncode == 0
            assert model_hash(out) in (old, new), f"kill point {point}: a mixed run"
        how = recover(tmp, out, command(idx_dir, out))
        if how == "whole" and model_hash(out) == old:  # the old run survived: the user runs the command again
            assert condnet(tmp, command(idx_dir, out)).returncode == 0
        assert RunDir(out).is_finished() and model_hash(out) == new, f"kill point {point} ({how})"
        RunDir(out).verify()
        outcomes.append((point, how))
        shutil.rmtree(tmp)
    ways = {how: sum(h == how for _, h in outcomes) for how in ("whole", "resumed", "rerun")}
    print(f"{scenario}: {len(outcomes)} kill points, 0 inconsistent; after the kill: {ways}")
