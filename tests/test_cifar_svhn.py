"""CIFAR-10 and SVHN loaders on small files generated in exactly the real formats."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from condnet.config import DataConfig
from condnet.data import cifar10, svhn
from condnet.data.splits import load_splits
from condnet.errors import DataError
from conftest import write_cifar10, write_svhn


def test_cifar10_splits_keep_the_stored_pixel_order(tmp_path):
    written = write_cifar10(tmp_path / "c", n_per_batch=8, n_test=5)
    splits = load_splits(DataConfig(name="cifar10", dir=str(tmp_path / "c"), valid_size=8))
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    # 40 training images: the first 32 train, the last 8 (data_batch_5) validate
    assert torch.equal(splits.x_train, torch.from_numpy(train[:32].astype(np.float32) / 255))
    assert torch.equal(splits.x_valid, torch.from_numpy(train[32:].astype(np.float32) / 255))
    assert torch.equal(splits.y_valid, torch.from_numpy(labels[32:]))
    assert torch.equal(splits.x_test, torch.from_numpy(written["test_batch"][0].astype(np.float32) / 255))
    assert splits.input_dim == 3072 and splits.n_classes == 10


def test_cifar10_from_the_archive_in_a_local_directory(tmp_path):
    write_cifar10(tmp_path / "src" / cifar10.FOLDER, n_per_batch=4, n_test=4)
    local = tmp_path / "local"
    local.mkdir()
    with tarfile.open(local / cifar10.ARCHIVE, "w:gz") as tar:
        tar.add(tmp_path / "src" / cifar10.FOLDER, arcname=cifar10.FOLDER)
    x_train, _, x_test, _ = cifar10.load_cifar10(local, tmp_path / "cache", network=False)
    assert x_train.shape == (20, 3072) and x_test.shape == (4, 3072)


def test_cifar10_refuses_objects_and_broken_batches(tmp_path, cifar10_dir):
    for name in cifar10.BATCH_MD5:
        (tmp_path / name).write_bytes((cifar10_dir / name).read_bytes())
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps({b"data": print, b"labels": []}))
    with pytest.raises(DataError, match="refusing"):
        cifar10.load_cifar10(tmp_path, network=False)
    (tmp_path / "data_batch_2").write_bytes((cifar10_dir / "data_batch_2").read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_2 is not a readable pickle"):
        cifar10.load_cifar10(tmp_path, network=False)
    bad = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"expected \(N, 3072\)"):
        cifar10.load_cifar10(tmp_path, network=False)


def test_cifar10_nothing_found_says_what_was_tried(tmp_path):
    with pytest.raises(DataError) as info:
        cifar10.load_cifar10(None, tmp_path / "cache", network=False)
    for part in ("canonical download: disabled", "--data-dir", "data_batch_1"):
        assert part in str(info.value)


def test_a_named_directory_without_the_files_is_refused_not_replaced_by_the_cache(tmp_path):
    write_cifar10(tmp_path / "cache" / "cifar10", n_per_batch=2, n_test=2)  # a cache that would be used
    (tmp_path / "empty").mkdir()
    for load, says in (
        (cifar10.load_cifar10, "holds no CIFAR-10 batch files"),
        (svhn.load_svhn, "does not hold"),
    ):
        for directory in (tmp_path / "empty", tmp_path / "missing"):
            with pytest.raises(DataError, match=f"{directory.name} {says}"):
                load(directory, tmp_path / "cache", network=False)


def test_svhn_images_are_channel_major_and_ten_is_zero(tmp_path):
    written = write_svhn(tmp_path, n_train=12, n_test=5)
    x_train, y_train, x_test, y_test = svhn.load_svhn(tmp_path, network=False)
    x, y = written["train_32x32.mat"]
    n, channel, row, col = 7, 2, 5, 30  # X[row, col, channel, n] lands at n, channel * 1024 + row * 32 + col
    assert x_train[n, channel * 1024 + row * 32 + col] == x[row, col, channel, n]
    assert np.array_equal(x_train[n].reshape(3, 32, 32), x[:, :, :, n].transpose(2, 0, 1))
    expected = np.where(y[:, 0] == 10, 0, y[:, 0])
    assert np.array_equal(y_train, expected) and 10 not in y_train
    assert x_test.shape == (5, 3072) and len(y_test) == 5


def test_svhn_broken_files_give_clear_errors(tmp_path):
    from scipy.io import savemat

    write_svhn(tmp_path, n_train=4, n_test=4)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(DataError, match="test_32x32.mat is not a readable MATLAB file"):
        svhn.load_svhn(tmp_path, network=False)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 1, 4), np.uint8), "y": np.ones((4, 1))})
    with pytest.raises(DataError, match=r"expected X \(32, 32, 3, N\)"):
        svhn.load_svhn(tmp_path, network=False)
    with pytest.raises(DataError, match="SVHN not found"):
        svhn.load_svhn(None, tmp_path / "cache", network=False)


def test_a_verified_download_is_kept_and_a_corrupt_one_is_not(tmp_path, monkeypatch):
    from condnet.data import download

    payload = b"the archive"

    def fake_urlopen(url, timeout):
        return io.BytesIO(payload)

    monkeypatch.setattr(download.urllib.request, "urlopen", fake_urlopen)
    target = tmp_path / "file.bin"
    with pytest.raises(DataError, match="does not match its published MD5"):
        download.download_verified("http://x/file.bin", "0" * 32, target)
    assert not target.exists() and not (tmp_path / "file.bin.partial").exists()
    import hashlib

    md5 = hashlib.md5(payload).hexdigest()
    assert download.download_verified("http://x/file.bin", md5, target).read_bytes() == payload
