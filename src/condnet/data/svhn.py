"""SVHN "format 2" (cropped 32x32 digits): find, fetch and read the MATLAB files.

Sources, in this order: a local directory (`data.dir`) holding `train_32x32.mat` and
`test_32x32.mat`; the cache (`<cache>/svhn`, files matching the published MD5s); the canonical
download (MD5-checked), stored in the cache. `extra_32x32.mat` is not used (the paper does not say
it was).

Each file holds `X` (32, 32, 3, N) uint8 and `y` (N, 1) with labels 1..10, where 10 is the digit 0.
Images are returned channel-major, (N, 3 * 32 * 32), like CIFAR-10, and labels as digits 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from condnet.data.download import default_cache_dir, download_verified, md5_of
from condnet.errors import DataError

BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
FILE_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
HOW_TO_PROVIDE = (
    f"Download train_32x32.mat and test_32x32.mat from {BASE_URL} where a network exists and put them "
    "in a directory given as data.dir (or --data-dir)."
)


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3072) uint8, channel-major, and labels (N,) in 0..9 from one SVHN .mat file."""
    from scipy.io import loadmat  # only SVHN needs scipy

    try:
        content = loadmat(path, variable_names=["X", "y"])
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... for garbled files
        raise DataError(f"{path} is not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if "X" not in content or "y" not in content:
        raise DataError(f"{path} has no X and y variables; expected SVHN format 2 (cropped digits)")
    x, y = content["X"], np.asarray(content["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or len(y) != x.shape[3]:
        raise DataError(
            f"{path}: X has shape {x.shape} ({x.dtype}) and y {content['y'].shape}; expected X "
            "(32, 32, 3, N) uint8 and y (N, 1)"
        )
    if y.size and not (y.min() >= 1 and y.max() <= 10):
        raise DataError(f"{path}: labels must be in 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).reshape(x.shape[3], -1)  # (N, c, row, col)
    return images, (y % 10).astype(np.int64)


def find_svhn(
    data_dir: str | Path | None = None, cache_dir: str | Path | None = None, network: bool = True
) -> Path:
    """A folder holding the train and test files; DataError listing what was tried when there is none."""
    tried = []
    if data_dir:
        local = Path(data_dir)
        if all((local / name).is_file() for name in FILE_MD5):
            return local
        raise DataError(
            f"the data directory {local} does not hold {' and '.join(FILE_MD5)}. " + HOW_TO_PROVIDE
        )
    cache = (Path(cache_dir) if cache_dir else default_cache_dir()) / "svhn"
    if all((cache / name).is_file() and md5_of(cache / name) == md5 for name, md5 in FILE_MD5.items()):
        return cache
    if not network:
        tried.append("canonical download: disabled")
    else:
        try:
            for name, md5 in FILE_MD5.items():
                download_verified(BASE_URL + name, md5, cache / name)
            return cache
        except DataError as exc:
            tried.append(f"canonical download: {exc}")
    raise DataError("SVHN not found. Tried: " + "; ".join(tried) + ". " + HOW_TO_PROVIDE)


def load_svhn(data_dir=None, cache_dir=None, network: bool = True):
    """(x_train (73257, 3072) uint8, y_train, x_test (26032, 3072), y_test)."""
    folder = find_svhn(data_dir, cache_dir, network)
    x_train, y_train = read_mat(folder / "train_32x32.mat")
    x_test, y_test = read_mat(folder / "test_32x32.mat")
    return x_train, y_train, x_test, y_test
