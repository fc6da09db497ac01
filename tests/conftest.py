"""Shared fixtures: a small MNIST-format dataset made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from condnet.data.idx import write_idx


def make_blob_images(n: int, n_classes: int, side: int, rng: np.random.Generator):
    """Images whose class decides which horizontal band is bright: learnable, but not trivially."""
    labels = rng.integers(0, n_classes, size=n).astype(np.uint8)
    images = rng.integers(0, 60, size=(n, side, side)).astype(np.uint8)
    band = side // n_classes
    for i, c in enumerate(labels):
        images[i, c * band : (c + 1) * band, :] = rng.integers(150, 256, size=(band, side))
    return images, labels


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory):
    """A 4-class, 12x12 MNIST-format dataset: 1,200 train and 300 test images, IDX files, some gzipped."""
    directory = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    x, y = make_blob_images(1200, 4, 12, rng)
    write_idx(directory / "train-images-idx3-ubyte.gz", x)
    write_idx(directory / "train-labels-idx1-ubyte", y)
    x, y = make_blob_images(300, 4, 12, rng)
    write_idx(directory / "t10k-images-idx3-ubyte", x)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", y)
    return directory


def write_cifar10(directory, n_per_batch: int, n_test: int, seed: int = 0) -> dict:
    """CIFAR-10 "python version" batch files (pickled dicts, protocol 2, as the real ones), 10 classes.

    Returns the written arrays, {name: (images (N, 3072) uint8, labels)}, for the tests to compare with.
    """
    import pickle

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_per_batch
        images, labels = make_blob_images(n, 10, 32, rng)
        data = np.concatenate([images.reshape(n, -1)] * 3, axis=1)  # 3 channels, channel-major
        data[:, :1024] //= 2  # channels differ, so a channel mix-up shows
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (data, labels.astype(np.int64))
    return written


def write_svhn(directory, n_train: int, n_test: int, seed: int = 0) -> dict:
    """SVHN format 2 files (MATLAB 5: X (32, 32, 3, N) uint8, y (N, 1) in 1..10), written by scipy.

    Returns {name: (X, y)} as written.
    """
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        images, digits = make_blob_images(n, 10, 32, rng)
        x = np.stack([images, images // 2, images // 3], axis=-1).transpose(1, 2, 3, 0).copy()
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        savemat(directory / name, {"X": x, "y": y})
        written[name] = (x, y)
    return written


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cifar10")
    write_cifar10(directory, n_per_batch=40, n_test=30)
    return directory


@pytest.fixture(scope="session")
def svhn_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("svhn")
    write_svhn(directory, n_train=200, n_test=30)
    return directory
