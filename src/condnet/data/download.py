"""Downloads from a dataset's canonical location, checked against a pinned hash, stored atomically."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from condnet.errors import DataError


def default_cache_dir() -> Path:
    return Path(os.environ.get("CONDNET_CACHE_DIR") or Path.home() / ".cache" / "condnet")


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, expected_md5: str, target: Path, timeout: float = 20.0) -> Path:
    """Download `url` to `target` unless a verified copy is there; DataError on any failure.

    The file is written under a temporary name and renamed only once its MD5 (the checksum the
    dataset's authors publish) matches, so an interrupted or corrupt download never looks finished.
    """
    if target.is_file() and md5_of(target) == expected_md5:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {exc}") from None
    if md5_of(partial) != expected_md5:
        partial.unlink()
        raise DataError(f"{url} does not match its published MD5 {expected_md5}; the download is corrupt")
    partial.replace(target)
    return target
