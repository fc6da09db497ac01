"""CIFAR-10, "python version": find, fetch and read the six pickled batches.

Sources, in this order:
1. a local directory (`data.dir`): `data_batch_1..5` and `test_batch`, directly in it or in its
   `cifar-10-batches-py/` folder, or the archive `cifar-10-python.tar.gz` in it;
2. the cache (`<cache>/cifar10`), whose batches must match the published MD5s;
3. the canonical download (the archive, MD5-checked before it is opened), stored in the cache.
Batches are read with a pickle reader that only rebuilds arrays, then checked for shape and labels.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from condnet.data.download import default_cache_dir, download_verified, md5_of
from condnet.data.safe_pickle import load_arrays
from condnet.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
# Published MD5 of each batch (the same values torchvision checks).
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
PIXELS = 3 * 32 * 32
HOW_TO_PROVIDE = (
    f"Download {URL} where a network exists and put the archive, or its {FOLDER}/ folder "
    "(data_batch_1..5, test_batch), in a directory given as data.dir (or --data-dir)."
)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images (N, 3072) uint8, channel-major as stored, and labels (N,) in 0..9."""
    batch = load_arrays(path.read_bytes(), "bytes", str(path))
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    images, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, {PIXELS})")
    if images.shape[1] != PIXELS or labels.shape != (len(images),):
        raise DataError(
            f"{path}: b'data' has shape {images.shape} and b'labels' {labels.shape}; expected "
            f"(N, {PIXELS}) and (N,)"
        )
    if labels.size and not (labels.min() >= 0 and labels.max() <= 9):
        raise DataError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)


def _batch_folder(directory: Path) -> Path | None:
    for folder in (directory, directory / FOLDER):
        if all((folder / name).is_file() for name in BATCH_MD5):
            return folder
    return None


def _extract(archive: Path, target: Path) -> Path:
    """Extract only the six batch files (by exact name: no path from the archive is trusted)."""
    folder = target / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in BATCH_MD5:
                member = tar.extractfile(f"{FOLDER}/{name}")
                if member is None:
                    raise DataError(f"{archive} has no {FOLDER}/{name}")
                partial = folder / f"{name}.partial"
                partial.write_bytes(member.read())
                partial.replace(folder / name)
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise DataError(f"{archive} is not a readable CIFAR-10 archive: {exc}") from None
    return folder


def _cache_is_valid(folder: Path) -> bool:
    return all(md5_of(folder / name) == md5 for name, md5 in BATCH_MD5.items())


def find_cifar10(
    data_dir: str | Path | None = None, cache_dir: str | Path | None = None, network: bool = True
) -> Path:
    """A folder holding the six batch files; DataError listing what was tried when there is none."""
    tried = []
    if data_dir:
        local = Path(data_dir)
        folder = _batch_folder(local)
        if folder is not None:
            return folder
        if (local / ARCHIVE).is_file():
            return _extract(local / ARCHIVE, local)
        raise DataError(
            f"the data directory {local} holds no CIFAR-10 batch files and no {ARCHIVE}. " + HOW_TO_PROVIDE
        )
    cache = (Path(cache_dir) if cache_dir else default_cache_dir()) / "cifar10"
    folder = _batch_folder(cache)
    if folder is not None and _cache_is_valid(folder):
        return folder
    if folder is not None:
        tried.append(f"cache {cache}: batches do not match the published MD5s (refetching)")
    if not network:
        tried.append("canonical download: disabled")
    else:
        try:
            return _extract(download_verified(URL, ARCHIVE_MD5, cache / ARCHIVE), cache)
        except DataError as exc:
            tried.append(f"canonical download: {exc}")
    raise DataError("CIFAR-10 not found. Tried: " + "; ".join(tried) + ". " + HOW_TO_PROVIDE)


def load_cifar10(data_dir=None, cache_dir=None, network: bool = True):
    """(x_train (50000, 3072) uint8, y_train, x_test (10000, 3072), y_test), channel-major pixels."""
    folder = find_cifar10(data_dir, cache_dir, network)
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    x_test, y_test = read_batch(folder / "test_batch")
    return np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test
