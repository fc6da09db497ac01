"""The engine's compiled micro-kernel (microkernel.c, built on install by setup.py): found beside this
file and loaded into the process once, so that numba's linker resolves the kernels' calls to it by
name (which keeps numba's on-disk cache valid: a symbol, not an address)."""

from __future__ import annotations

import ctypes
import importlib.machinery
from pathlib import Path

import llvmlite.binding

NAME = "_microkernel"


def library_path(here: Path = Path(__file__).parent) -> Path:
    """The built library in `here`, or an ImportError that says how to build it."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (here / f"{NAME}{suffix}").is_file():
            return here / f"{NAME}{suffix}"
    raise ImportError(
        f"condnet's compiled engine kernel ({here / NAME}*.so) is missing: install condnet with pip "
        "(`pip install -e .` or `make setup`), which builds it with the system C compiler"
    )


llvmlite.binding.load_library_permanently(str(library_path()))


def vector_width(width: int = 0) -> int:
    """The micro-kernel's vector width in use: 16 (AVX-512) where the CPU has it, else 8. `width` 8 or 16
    switches it for this process (16 only where the CPU has AVX-512), so that tests and benchmarks can
    run both products on one machine; 0 only reads it."""
    function = ctypes.CDLL(str(library_path())).condnet_vector_width
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function(width)


def int8_path(choice: int = 0) -> int:
    """The int8 batch product's version in use (int8_product.c): 3 AVX-512 VNNI, 2 AVX2, 1 portable.
    `choice` 1-3 switches to it for this process where the CPU has it; 0 only reads it."""
    function = ctypes.CDLL(str(library_path())).condnet_int8_path
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function(choice)
