"""A wheel built from the repository carries its configs: installed away from the checkout, `condnet
train --config NAME` and `condnet reproduce` find the packaged ones."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, installed (without its dependencies: those of this environment serve) into a
    directory of its own, which comes first on the path."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), str(ROOT)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = work.glob("condnet-*.whl")
    target = work / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target)]
    assert subprocess.run([*install, str(wheel)], capture_output=True, timeout=600).returncode == 0
    return wheel, target


def test_the_wheel_ships_every_config(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/condnet/configs").rglob("*.toml")}
    assert shipped and shipped <= names


def test_an_installed_condnet_trains_and_reproduces_from_packaged_configs(installed, idx_dir, tmp_path):
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = [sys.executable, "-m", "condnet.cli"]
    locate = [sys.executable, "-c", "import condnet; print(condnet.__file__)"]
    where = subprocess.run(locate, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.startswith(str(target)), where.stdout  # the installed copy, not the checkout
    data = ["--set", "data.name=idx", "--set", "data.valid_size=200", "--set", "train.max_epochs=1"]
    config = ["--config", "mnist_nn32.toml", "--set", f'data.dir="{idx_dir}"']
    train = [*run, "train", *config, *data, "--out", "r"]
    result = subprocess.run(train, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    reproduce = [*run, "reproduce", "mnist", "--rows", "nn-32", "--seeds", "1", "--timing-repeats", "1",
                 "--data-dir", str(idx_dir), *data, "--out", "runs", "--report", "report"]  # fmt: skip
    result = subprocess.run(reproduce, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "report" / "mnist.csv").is_file()


def test_library_code_never_prints():
    """Progress goes through a `log` callback or the "condnet" logger; only the command line prints
    (a library function that printed by default wrote into its caller's output)."""
    import ast

    import condnet

    root = Path(condnet.__file__).parent
    printing = []
    for module in sorted(root.rglob("*.py")):
        if module.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Name) and node.id == "print":
                printing.append(f"{module.relative_to(root)}:{node.lineno}")
    assert printing == []
