"""Every `condnet` command and the Python snippet the README shows, run as written on the fixture data
(issue 23): a README line that stopped working fails here, not in a user's hands.

Each line is taken from the README's code blocks and changed only where it must be to run here, in
this order: optional parts ([...]) are kept, "a|b" alternatives take the first, "..." goes; placeholders
(SPACE.toml, DIR, GATED_RUN, ...) become files this test makes; sizes shrink (seeds, trials, cases,
batches, repeats); every training reads the fixture dataset for one epoch. `--cluster` is dropped
(tests/test_cluster.py starts a real scheduler) and a PostgreSQL --storage becomes a journal file
(tests/test_search_database.py starts a real server). What is not a condnet line (make, dask) is not run.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from condnet.cli import main
from condnet.config import load_config, to_toml
from test_training import SMALL

ROOT = Path(__file__).resolve().parents[1]
SHRINK = {"--seeds": "1", "--trials": "2", "--cases": "20", "--batch": "1,2", "--threads": "1",
          "--workers": "1", "--arch": "144,64,64,4", "--block-size": "16"}  # fmt: skip
TRAINS = {"train", "reproduce", "ablate", "sparsify"}  # the commands that take --set for their training
TIMES = {"bench": "--repeats", "versus": "--repeats", "reproduce": "--timing-repeats",
         "ablate": "--timing-repeats", "frontier": "--timing-repeats"}  # fmt: skip


def readme_blocks(language: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", readme, flags=re.S)


def readme_lines() -> list[str]:
    blocks = readme_blocks("(?:sh)?")
    lines = [
        line.split("#")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()
    ]
    return [line for line in lines if line.startswith("condnet ")]


def as_run_here(line: str, places: dict[str, str]) -> list[str]:
    """The README line as arguments that run on the fixture data (the module docstring's rules)."""
    line = line.replace("[", " ").replace("]", " ").replace("...", " ")
    words = [word.split("|")[0] for word in shlex.split(line)]
    args, skip = [], False
    for i, word in enumerate(words[1:], start=1):
        if skip:
            skip = False
            continue
        if word == "--cluster":
            skip = True
            continue
        previous = words[i - 1]
        if previous == "--storage":
            word = f"{places['shared']}/journal-{len(places['journals'])}.log"  # a study of its own
            places["journals"].append(word)
        elif previous in SHRINK:
            word = SHRINK[previous]
        elif previous == "--resume":
            word = places["killed"]
        elif previous in ("--data-dir", "--configs"):
            word = places[previous.strip("-")]
        elif word in places:
            word = places[word]
        elif word.startswith("/shared/"):
            word = places["shared"] + word
        args.append(word)
    command = args[0]
    if command == "frontier":
        args[1] = "idx"  # the fixture dataset's name (configs say data.name = "idx")
    if command in TRAINS and "--resume" not in args:  # a resumed run keeps its own config
        args += ["--set", "data.name=idx", "--set", f"data.dir={json.dumps(places['data-dir'])}",
                 "--set", "data.valid_size=200", "--set", "train.max_epochs=1"]  # fmt: skip
    if command in TIMES:
        args += [TIMES[command], "1"]
    if command == "search" and "--trials" not in args:  # 100 by default
        args += ["--trials", "2"]
    return args


@pytest.fixture
def places(tmp_path, idx_dir, monkeypatch) -> dict[str, str]:
    """The README's placeholders, made here; the working directory is a fresh one whose configs/ is the
    repository's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    common = [*SMALL, f"data.dir={json.dumps(str(idx_dir))}", "train.max_epochs=1"]
    configs = tmp_path / "chosen"
    configs.mkdir()
    for name, extra in (("dense", "model.kind=nn"), ("topk", "model.router=topk")):
        (configs / f"{name}.toml").write_text(to_toml(load_config(None, [*common, extra])))
    space = tmp_path / "space.toml"
    space.write_text(f'name = "tiny"\nset = {json.dumps(common)}\n\n[params]\n'
                     '"train.lr_net" = { low = 1e-3, high = 0.02, log = true }\n')  # fmt: skip
    return {"data-dir": str(idx_dir), "configs": str(configs), "SPACE.toml": str(space),
            "journals": [], "shared": str(tmp_path), "GATED_RUN": "runs/paper-s1",
            "DENSE_RUN": "runs/nn256-s1", "DIR": "runs/sparsified", "A,B": "nn-32,condnet-paper", "N": "3",
            "killed": "runs/killed"}  # fmt: skip


def interrupted_after_one_epoch(args: list[str], monkeypatch) -> None:
    """`condnet train ARGS` stopped by Ctrl-C after its first epoch (a run for `train --resume`)."""
    import condnet.cli as cli

    progress = cli._progress_callbacks

    def stopping(max_epochs):
        on_batch, on_epoch = progress(max_epochs)

        def on_epoch_then_stop(record):
            on_epoch(record)
            raise KeyboardInterrupt

        return on_batch, on_epoch_then_stop

    with monkeypatch.context() as patch:
        patch.setattr(cli, "_progress_callbacks", stopping)
        assert main(args) == 130


def test_every_readme_command_runs(places, capsys, monkeypatch):
    lines = readme_lines()
    assert len(lines) >= 14
    killed = as_run_here(f"condnet train --config configs/mnist_paper.toml --out {places['killed']}", places)
    interrupted_after_one_epoch([*killed, "--set", "train.max_epochs=2"], monkeypatch)
    dense = "train --config configs/mnist_nn256.toml --seed 1 --out runs/nn256-s1"  # summary's second run
    assert main(as_run_here(f"condnet {dense}", places)) == 0
    failed = []
    for line in lines:
        args = as_run_here(line, places)
        try:
            code = main(args)
        except SystemExit as exc:  # argparse refused the line
            code = exc.code
        if code != 0:
            failed.append(f"{line}\n  ran: condnet {shlex.join(args)}\n  {capsys.readouterr().err[-500:]}")
    assert not failed, "\n".join(failed)


def test_the_readme_python_snippet_runs(places):
    assert (
        main(as_run_here("condnet train --config configs/mnist_paper.toml --out runs/paper-s1", places)) == 0
    )
    (snippet,) = [b for b in readme_blocks("python") if "Engine.from_run" in b]
    x = np.random.default_rng(0).random((3, 144), dtype=np.float32)  # the fixture's 12 x 12 images
    scope = {"x": x}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["logits"].shape == (3, 4)
