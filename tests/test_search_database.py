"""`condnet search --storage postgresql://...`: a real PostgreSQL server on localhost, started here (no
set-up needed), shared by two search processes as by two machines: no trial fails the other's, and
`--trials N` is N in all."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_runs import wait_for
from test_search import two_searches_share, write_space

BIN = Path("/usr/lib/postgresql")


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(BIN.glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


@pytest.fixture(scope="module")
def postgres():
    initdb, server = _binary("initdb"), _binary("postgres")
    if not (initdb and server):
        message = ("PostgreSQL's initdb and postgres are not installed (Debian: apt install postgresql); "
                   "these tests start their own server on localhost")  # fmt: skip
        if os.environ.get("CONDNET_REQUIRE_POSTGRES"):  # .ci/run sets it: CI runs them
            pytest.fail(message)
        pytest.skip(message)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    directory = Path(tempfile.mkdtemp(prefix="condnet-pg-"))
    if as_user:
        shutil.chown(directory, "postgres")
    data = directory / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "condnet", "--auth=trust"], check=True,
                   capture_output=True)  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [*as_user, server, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(directory)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(ready, timeout=60)
    yield f"postgresql://condnet@127.0.0.1:{port}/postgres"
    process.terminate()
    process.wait(timeout=30)
    shutil.rmtree(directory, ignore_errors=True)


def test_two_searches_share_one_study_in_postgresql(postgres, tmp_path, idx_dir):
    two_searches_share(tmp_path, idx_dir, postgres, "in-postgres")


def test_an_unreachable_database_is_named(tmp_path, idx_dir, capsys):
    from condnet.cli import main

    space = write_space(tmp_path, idx_dir, '"train.lr_net" = { choices = [0.01] }', name="nowhere")
    url = "postgresql://condnet@127.0.0.1:9/postgres"
    assert main(["search", space, "--trials", "1", "--storage", url, "--out", str(tmp_path / "s")]) == 2
    assert f"cannot open the study database {url}" in capsys.readouterr().err
