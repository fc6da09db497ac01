"""The IDX file format of MNIST (raw or gzip-compressed): read and write.

Layout: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, one big-endian uint32 per
dimension, then the data, row-major. Only uint8 data is supported, which is what image datasets use.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from condnet.errors import DataError

UINT8 = 0x08


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the bytes of one IDX file into a uint8 array of its declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name} is not an IDX file (bad magic number)")
    dtype, ndim = raw[2], raw[3]
    if dtype != UINT8:
        raise DataError(f"{name}: IDX type code 0x{dtype:02x} is not supported (only uint8, 0x08)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{name}: IDX header declares shape {shape} ({expected} bytes), file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when its name ends in .gz."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DataError(f"cannot read {path}: {exc}") from None
    except EOFError:
        raise DataError(f"cannot read {path}: the gzip stream is truncated") from None


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(read_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(f">BBBB{array.ndim}I", 0, 0, UINT8, array.ndim, *array.shape) + array.tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    data = encode_idx(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
