"""A wheel built from the repository carries its configs: installed away from the checkout, `condnet
train --config NAME` and `condnet reproduce` find the packaged ones; and (CONDNET_FRESH_VENV=1, off by
default: several minutes of installing) so does a fresh venv holding only the pinned CPU torch and the
wheel with its train and bench extras (reproduce times dense nets in ONNX Runtime, the bench extra)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(work: Path) -> Path:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work), str(ROOT)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = work.glob("condnet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, installed (without its dependencies: those of this environment serve) into a
    directory of its own, which comes first on the path."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
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
    trains_and_reproduces(
        sys.executable, {**os.environ, "PYTHONPATH": str(target)}, target, idx_dir, tmp_path
    )


@pytest.mark.skipif(os.environ.get("CONDNET_FRESH_VENV") != "1", reason="slow; set CONDNET_FRESH_VENV=1")
def test_a_fresh_venv_with_the_wheel_trains_and_reproduces(tmp_path_factory, idx_dir, tmp_path):
    work = tmp_path_factory.mktemp("fresh")
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
    pip = [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check"]
    # the CPU torch pinned first, as the Makefile does
    for what in (["torch==2.13.0"], [f"{wheel}[train,bench]"]):
        result = subprocess.run([*pip, *what], capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    trains_and_reproduces(str(venv / "bin/python"), env, venv, idx_dir, tmp_path)


def trains_and_reproduces(python: str, env: dict, installed_under: Path, idx_dir, tmp_path) -> None:
    """From an empty directory: `condnet train` on a packaged config name, then `condnet reproduce`."""
    run = [python, "-m", "condnet.cli"]
    locate = [python, "-c", "import condnet; print(condnet.__file__)"]
    where = subprocess.run(locate, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.startswith(str(installed_under)), where.stdout  # the installed copy, not the checkout
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
