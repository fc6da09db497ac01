"""The micro-kernel's products shared between threads (engine/shared_product.c) against numpy: one
product by chunks of its outputs (any width: a last chunk of 8, 24 or 16 outputs; too narrow to share),
a gated layer's products by output blocks, float32 and bfloat16 weights, sums added to what is there;
helpers that take part; callers on several threads at once (one job at a time: the others compute
alone); a forked child that starts helpers of its own."""

from __future__ import annotations

import ctypes
import os
import threading
import time

import numpy as np
import pytest
import torch

from condnet.engine import native
from condnet.engine.kernels import panel_width
from condnet.engine.layout import to_bf16, to_panels
from test_microkernel import gathered_product


def library():
    return ctypes.CDLL(str(native.library_path()))


def shared_product():
    """condnet_shared_product: condnet_gathered_product's arguments, then the threads."""
    function = library().condnet_shared_product
    function.argtypes = [*gathered_product().argtypes, ctypes.c_int64]
    function.restype = None
    return function


def helped() -> int:
    function = library().condnet_shared_product_helped
    function.restype = ctypes.c_int64
    return function()


def case(n_out: int, n_in: int, m: int, bf16: bool, seed: int):
    """(call, expected, acc): one dense block of n_out outputs, m of 9 examples, every input; call(threads)
    sets acc to its first values and adds the product; expected in float64 (bf16: the weights rounded
    by PyTorch)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n_out, n_in), dtype=np.float32)
    panels = to_panels(weight, n_out)
    if bf16:
        panels = to_bf16(panels).reshape(1, -1)
        weight = torch.from_numpy(weight).to(torch.bfloat16).float().numpy()
    x = rng.standard_normal((9, n_in), dtype=np.float32)
    xrows = rng.choice(9, m, replace=False).astype(np.int64)
    accrows = np.arange(m, dtype=np.int64)
    width = panel_width(n_out)
    first = rng.standard_normal((m, width), dtype=np.float32)  # sums are added to what is there
    acc = first.copy()
    expected = first[:, :n_out].astype(np.float64) + x[xrows].astype(np.float64) @ weight.T.astype(np.float64)
    function = shared_product()

    def call(threads: int) -> None:
        acc[:] = first
        function(x.ctypes.data, n_in, xrows.ctypes.data, accrows.ctypes.data, m, 0, n_in, panels.ctypes.data,
                 n_in, width, acc.ctypes.data, width, int(bf16), threads)  # fmt: skip

    return call, expected, acc


def close(acc: np.ndarray, expected: np.ndarray) -> bool:
    return np.allclose(acc[:, : expected.shape[1]], expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("n_out", [16, 40, 56, 64, 1000])  # 1000: the last panel 8 wide, last chunk 8
@pytest.mark.parametrize("m", [1, 3, 7])
@pytest.mark.parametrize("threads", [2, 3])
def test_shared_product_matches_numpy(n_out, m, threads, bf16):
    call, expected, acc = case(n_out, 301, m, bf16, seed=n_out + m)  # 301: odd bf16 offsets
    call(threads)
    np.testing.assert_allclose(acc[:, :n_out], expected, rtol=1e-5, atol=1e-4)


def test_helpers_take_part():
    """A product long enough (16 MB of weights) that a helper wakes before the caller has taken every
    chunk."""
    before = helped()
    call, expected, acc = case(1024, 4096, 1, False, seed=0)
    for _ in range(10):
        call(2)
        assert close(acc, expected)
    assert helped() > before


def test_callers_on_several_threads_at_once():
    """ctypes releases the GIL: four threads call at once; each product stays its own."""
    cases = [case(1024, 1024, 2, bool(t % 2), seed=t) for t in range(4)]
    wrong = []

    def run(call, expected, acc):
        for _ in range(50):
            call(2)
            if not close(acc, expected):
                wrong.append(acc.copy())

    threads = [threading.Thread(target=run, args=c) for c in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert not wrong


def test_a_forked_child_starts_helpers_of_its_own():
    call, expected, acc = case(1024, 2048, 1, False, seed=1)
    call(2)  # the parent's helpers are running
    pid = os.fork()
    if pid == 0:  # the child: products on two threads, then its answer as the exit code
        ok = False
        try:
            for _ in range(5):
                call(2)
                ok = close(acc, expected)
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's shared product did not finish in 60 s")
    assert os.waitstatus_to_exitcode(status) == 0


def block_products():
    function = library().condnet_block_products
    function.argtypes = (
        [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
        + [ctypes.c_int64] * 6
        + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
    )
    function.restype = None
    return function


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_block_products_match_numpy(threads, bf16):
    """A gated layer's sums by output block against numpy: masks as rows of a wider array (the engine's
    views), an example with no input block on, an output block on for no example."""
    rng = np.random.default_rng(threads)
    batch, n_in_blocks, bs_in, n_out_blocks, bs_out = 20, 6, 16, 5, 24
    n_in = n_in_blocks * bs_in
    weight = rng.standard_normal((n_out_blocks * bs_out, n_in), dtype=np.float32)
    panels = to_panels(weight, bs_out)
    if bf16:
        panels = to_bf16(panels).reshape(n_out_blocks, -1)
        weight = torch.from_numpy(weight).to(torch.bfloat16).float().numpy()
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    in_wide = (rng.random((batch, 8)) < 0.6).astype(np.uint8)
    out_wide = (rng.random((batch, 7)) < 0.5).astype(np.uint8)
    in_wide[2, :] = 0
    out_wide[:, 3] = 0
    in_mask, out_mask = in_wide[:, :n_in_blocks], out_wide[:, :n_out_blocks]
    width = panel_width(bs_out)
    acc = np.full((n_out_blocks, batch, width), np.nan, np.float32)
    scratch = np.empty((threads, 3, batch), np.int64)
    block_products()(x.ctypes.data, n_in, in_mask.ctypes.data, in_wide.strides[0], out_mask.ctypes.data,
                     out_wide.strides[0], batch, n_in_blocks, n_in, n_out_blocks, width, panels.ctypes.data,
                     panels.strides[0], acc.ctypes.data, int(bf16), scratch.ctypes.data, threads)  # fmt: skip
    gate = np.repeat(in_mask, bs_in, axis=1).astype(np.float64)  # inputs of inactive blocks count 0
    for j in range(n_out_blocks):
        rows = np.flatnonzero(out_mask[:, j])
        block = weight[j * bs_out : (j + 1) * bs_out].astype(np.float64)
        expected = (x[rows] * gate[rows]) @ block.T
        np.testing.assert_allclose(acc[j, : len(rows), :bs_out], expected, rtol=1e-5, atol=1e-4)
