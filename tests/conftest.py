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
