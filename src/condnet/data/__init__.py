"""Datasets: IDX files, MNIST fetching and verification, train/valid/test splits."""

from condnet.data.mnist import fetch_mnist
from condnet.data.splits import Splits, load_idx_splits, load_splits

__all__ = ["Splits", "fetch_mnist", "load_idx_splits", "load_splits"]
