"""Datasets: IDX files (MNIST and its format), MNIST fetching and verification, CIFAR-10 and SVHN from
their standard files, train/valid/test splits."""

from condnet.data.mnist import fetch_mnist
from condnet.data.splits import Splits, load_idx_splits, load_splits

__all__ = ["Splits", "fetch_mnist", "load_idx_splits", "load_splits"]
