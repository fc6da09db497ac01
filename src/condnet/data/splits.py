"""Train / validation / test splits as tensors, ready for the model.

Preprocessing (paper section 4): pixels / 255, flattened (CIFAR-10 and SVHN channel-major, 3 x 32 x 32).
The validation split is the last `valid_size` training examples: for MNIST the last 10,000 (the
paper), for CIFAR-10 the last 10,000 of the 50,000 (data_batch_5: 40k train / 10k valid, as in the
authors' code), for SVHN the last 6,000 of train_32x32.mat (our choice, configs/svhn/; the paper
does not give its split). The test split is only read for the final report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from condnet.config import DataConfig
from condnet.data.cifar10 import load_cifar10
from condnet.data.idx import read_idx
from condnet.data.mnist import fetch_mnist
from condnet.data.svhn import load_svhn
from condnet.errors import DataError


@dataclass
class Splits:
    x_train: torch.Tensor  # (n_train, input_dim) float32 in [0, 1]
    y_train: torch.Tensor  # (n_train,) int64
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]


def _find(directory: Path, prefixes: tuple[str, ...], kind: str) -> Path:
    for prefix in prefixes:
        for suffix in ("", ".gz"):
            for sep in ("-", "."):  # train-images-idx3-ubyte and train-images.idx3-ubyte both occur
                path = (
                    directory / f"{prefix}-{kind}{sep}{'idx3' if kind == 'images' else 'idx1'}-ubyte{suffix}"
                )
                if path.is_file():
                    return path
    raise DataError(
        f"no {prefixes[0]}-{kind} IDX file in {directory}; expected a file named like "
        f"{prefixes[0]}-{kind}-{'idx3' if kind == 'images' else 'idx1'}-ubyte (raw or .gz)"
    )


def _pair(directory: Path, prefixes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(_find(directory, prefixes, "images"))
    labels = read_idx(_find(directory, prefixes, "labels"))
    if labels.ndim != 1 or images.ndim < 2 or len(images) != len(labels):
        raise DataError(
            f"{directory}: {prefixes[0]} images {images.shape} and labels {labels.shape} do not match "
            f"(expected N images and N labels)"
        )
    return images.reshape(len(images), -1), labels


def load_idx_splits(directory: str | Path, valid_size: int) -> Splits:
    """Splits from any MNIST-format dataset: `train-*` and `t10k-*` (or `test-*`) IDX files."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is a file, not a directory" if directory.exists() else "does not exist"
        raise DataError(f"data directory {directory} {what}: data.dir names the directory of the IDX files")
    x_train, y_train = _pair(directory, ("train",))
    x_test, y_test = _pair(directory, ("t10k", "test"))
    return splits_from_arrays(x_train, y_train, x_test, y_test, valid_size, str(directory))


def splits_from_arrays(x_train, y_train, x_test, y_test, valid_size: int, source: str) -> Splits:
    """uint8 images (N, pixels) and integer labels -> float splits; the last `valid_size` training
    examples become the validation split."""
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"{source}: train images have {x_train.shape[1]} pixels, test images {x_test.shape[1]}"
        )
    if valid_size >= len(x_train):
        raise DataError(
            f"data.valid_size = {valid_size} leaves no training data ({len(x_train)} training examples); "
            f"choose a value below {len(x_train)}"
        )
    n_classes = int(max(y_train.max(), y_test.max())) + 1

    def images(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0)

    def labels(a):
        return torch.from_numpy(a.astype(np.int64))

    cut = len(x_train) - valid_size
    return Splits(
        images(x_train[:cut]),
        labels(y_train[:cut]),
        images(x_train[cut:]),
        labels(y_train[cut:]),
        images(x_test),
        labels(y_test),
        n_classes,
    )


def load_splits(cfg: DataConfig) -> Splits:
    """The splits a config asks for (MNIST is fetched and verified when needed)."""
    if cfg.name == "cifar10":
        arrays = load_cifar10(cfg.dir or None, cfg.cache_dir or None)
        return splits_from_arrays(*arrays, cfg.valid_size, "CIFAR-10")
    if cfg.name == "svhn":
        arrays = load_svhn(cfg.dir or None, cfg.cache_dir or None)
        return splits_from_arrays(*arrays, cfg.valid_size, "SVHN")
    if cfg.name == "mnist":
        directory = fetch_mnist(data_dir=cfg.dir or None, cache_dir=cfg.cache_dir or None)
    else:
        directory = Path(cfg.dir)
    return load_idx_splits(directory, cfg.valid_size)
