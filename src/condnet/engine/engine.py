"""The inference engine: a trained CondNet compiled into block-sparse kernels whose cost follows the
active blocks (paper section 3.4: ((H * M_H) W) * M_O). It needs numpy, numba and safetensors, never
PyTorch: a run directory is read by `condnet.checkpoint`.

Per hidden layer the engine evaluates the policy, decides the mask (threshold or sampling, as the
PyTorch model does), and computes only the active output blocks from the active input blocks. Every
call runs the whole network in one compiled call, so no Python runs between layers:
- Batch 1 (latency): `kernels.forward_one` reads only active blocks with dot products over contiguous
  weight rows; its arguments are few and its buffers made once, so a call costs little more than its
  arithmetic.
- Batch > 1: `kernels.forward_batch` groups the examples by output block and computes each group with
  the C micro-kernel (microkernel.c), at the speed of a tuned GEMM; a dense layer is one group of
  every example, so dense nets need no other product (and no BLAS).
- Each hidden layer's gate (condnet.gates) is lowered to one kernel decision (engine/lowering.py):
  routers' scores take the policy's place, and the chosen blocks' outputs of top-k and tree routers
  are scaled by their gate values after their product.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numba
import numpy as np

from condnet.checkpoint import META, TENSORS, Checkpoint, read_checkpoint
from condnet.config import MODES
from condnet.engine import kernels
from condnet.engine.layout import pack
from condnet.engine.lowering import draws, lower
from condnet.limits import check_seed
from condnet.run_dir import RunDir

_MODE_CODES = {"threshold": kernels.THRESHOLD, "sample": kernels.SAMPLE}
# the layers' weights as the kernels read them: float32 (exact); bfloat16 (half the bytes: the upper 16
# bits of each float32, rounded to nearest; products still sum in float32); or int8 with one scale per
# output row (a quarter of the bytes), multiplied by the layer's input quantized per example (integer sums)
WEIGHTS = ("fp32", "bf16", "int8")


def as_checkpoint(network) -> Checkpoint:
    """A Checkpoint as it is; anything else that can give one (a PyTorch CondNet: `to_checkpoint()`)."""
    if isinstance(network, Checkpoint):
        return network
    if hasattr(network, "to_checkpoint"):
        return network.to_checkpoint()
    raise TypeError(f"Engine takes a Checkpoint or a CondNet, got {type(network).__name__}")


class Engine:
    """Block-sparse inference for a trained CondNet.

    Engine(network, threads=1, weights="fp32"): network is a `Checkpoint` (see `Engine.from_run`) or a
    PyTorch CondNet; threads: the cores of a batch's larger products and, for a dense net, of its layers
    of kernels.PARALLEL_MIN_WEIGHTS weights or more at batch 1 too (each thread reads its share of the
    weights, on shared_product.c's helper threads; other nets' batch 1 runs on one core); weights "bf16"
    reads the layers' weights in bfloat16 (half the bytes, about 3 significant digits; the scores'
    weights, biases and all sums stay float32), "int8" in int8 with one scale per output row (a quarter
    of the bytes), each layer's input quantized per example to 8-bit integers (layout.int8_rows,
    kernels._blocks_one_int8; batches in int8_product.c, with AVX-512 VNNI's 8-bit products where the
    CPU has them, on several threads by slices of examples), "fp32" exactly.
    forward(x: (batch, input_dim) array, mode, masks=None, seed=None) -> (logits, masks)
    - mode "threshold" (the default): block on iff sigma > 0.5 (sigma is summed in another order than
      PyTorch's, so a block whose sigma is within float rounding of 0.5 may be decided the other way);
      "sample": Bernoulli(sigma) drawn from numpy's generator: `seed` (an int or a Generator) makes
      the draws reproducible; None uses the engine's own generator, and at batch 1 (and a gated net's
      batches of 2-3) numba's, drawn inside the kernel (not reproducible; the engine's draws are not
      torch's: to compare with the PyTorch model, pass the same `masks`);
    - masks: per hidden layer (batch, n_blocks) arrays of 0/1 that replace the policy's decision
      (other values are refused, as by the PyTorch model). A dense layer is computed as one block
      (`dense_as_one_block`); given masks, which may switch its blocks off, are then run by a second
      engine at the config's blocks, made at the first such call.
    - x: float32 C-contiguous is taken as it is; other real dtypes and layouts are converted. NaN or
      infinite inputs are refused (in batches, found through the first layer's sums: an input so
      large that they overflow float32 is refused too). A batch of 0 gives empty outputs.
    Returns new arrays: logits (batch, n_classes) float32, masks (batch, n_blocks) uint8 per layer.
    One engine serves one call at a time (its batch-1 buffers are reused); use one engine per thread.
    """

    def __init__(self, network, threads: int = 1, weights: str = "fp32", *, dense_as_one_block: bool = True):
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        self.weights = weights
        checkpoint = as_checkpoint(network)
        cfg = checkpoint.model
        self.input_dim, self.n_classes = checkpoint.input_dim, checkpoint.n_classes
        n_hidden = len(cfg.widths)
        layers = lower(checkpoint, dense_as_one_block)
        hidden = layers[:-1]
        # masks are seen and given at the config's blocks; a dense layer computed as one block is all on
        self._blocks = [width // size for width, size in zip(cfg.widths, cfg.block_size, strict=True)]
        self._merged = [layer.n_out_blocks != k for layer, k in zip(hidden, self._blocks, strict=True)]
        self._checkpoint = checkpoint if any(self._merged) else None  # for the engine of given masks
        self._at_config_blocks = None  # that engine, once made
        self._weights, self._meta = pack(layers, cfg.p_min, cfg.p_max, weights)
        # batch 1: the fused kernel's buffers (see kernels.work_layout), and views of them
        max_blocks, o_logits, *_, size = kernels.work_layout(self._meta)
        self._max_blocks = max_blocks
        self._work = np.zeros(size, np.float32)
        self._noise = self._work[: n_hidden * max_blocks].reshape(n_hidden, max_blocks)
        self._logits = self._work[o_logits : o_logits + self.n_classes].reshape(1, self.n_classes)
        self._flags = np.zeros((2, n_hidden, max_blocks), np.uint8)
        at = enumerate(zip(self._blocks, self._merged, strict=True))
        self._decided = [
            np.ones((1, k), np.uint8) if merged else self._flags[1, i : i + 1, :k] for i, (k, merged) in at
        ]
        self._rng = np.random.default_rng()
        self._one_example = (1, self.input_dim)
        self._draws = draws(layers)  # routers decide deterministically
        self._gated = any(layer.decision != kernels.DENSE for layer in hidden)
        # a dense net whose largest layer is worth splitting over threads (kernels.PARALLEL_MIN_WEIGHTS)
        largest = max(layer.weight.size for layer in layers)
        self._splits = not self._gated and largest >= kernels.PARALLEL_MIN_WEIGHTS
        self._no_noise = np.zeros((n_hidden, 0, 0), np.float32)  # not read outside mode SAMPLE
        self.set_threads(threads)

    @classmethod
    def from_run(cls, run_dir: str | Path, threads: int = 1, weights: str = "fp32") -> Engine:
        """The engine of a trained run's checkpoint (read and verified without PyTorch; in a finished run
        directory, its files must also be those the run finished with)."""
        run = RunDir(run_dir)
        if run.is_finished():
            run.verify(TENSORS, META)
        return cls(read_checkpoint(run_dir), threads, weights)

    def set_threads(self, threads: int) -> None:
        """Use `threads` cores (see the class's docstring)."""
        available = numba.config.NUMBA_NUM_THREADS
        if not isinstance(threads, int) or not 1 <= threads <= available:
            raise ValueError(
                f"threads must be a whole number from 1 to {available} on this machine, got {threads}"
            )
        self.threads = threads
        numba.set_num_threads(threads)
        # a dense net's batch 1 on the batch kernel, whose large dense layers share their outputs between
        # threads (RESULTS 10.16); int8's batch kernel splits a batch by examples, not a dense layer's outputs
        self._one_by_batch = threads > 1 and self._splits and self.weights != "int8"
        if self._at_config_blocks is not None:
            self._at_config_blocks.set_threads(threads)

    def forward(
        self,
        x: np.ndarray,
        mode: str = "threshold",
        masks: list[np.ndarray] | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        code = _MODE_CODES.get(mode) if isinstance(mode, str) else None
        if code is None:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if masks is not None and len(masks) != len(self._blocks):
            raise ValueError(
                f"masks must hold one array per hidden layer ({len(self._blocks)}), got {len(masks)}"
            )
        if seed is not None and not isinstance(seed, np.random.Generator):
            check_seed(seed)
        if masks is not None and self._checkpoint is not None:  # a dense layer's blocks may be switched off
            return self._given_masks_engine().forward(x, mode, masks, seed)
        # batch 1, the latency path: one fused call
        if getattr(x, "shape", None) == self._one_example and not self._one_by_batch:
            if masks is not None:
                code = self._given_flags(masks)
            elif code == kernels.SAMPLE and self._draws:
                if seed is None:
                    code = kernels.OWN_SAMPLE
                else:
                    self._generator(seed).random(dtype=np.float32, out=self._noise)
            try:  # the kernel's one signature takes float32 C-contiguous x only: numba checks it
                status = kernels.forward_one(x, self._weights, self._meta, self._work, self._flags, code)
            except TypeError:
                x = self._converted(x)
                status = kernels.forward_one(x, self._weights, self._meta, self._work, self._flags, code)
            if status:
                raise ValueError(_NON_FINITE)
            # new arrays (the buffers are reused by the next call); one layer without a comprehension,
            # which costs 0.15 us
            decided = self._decided
            drawn = [decided[0].copy()] if len(decided) == 1 else [d.copy() for d in decided]
            return self._logits.copy(), drawn
        if not (x.__class__ is np.ndarray and x.dtype is _FLOAT32 and x.ndim == 2 and x.flags.c_contiguous
                and x.flags.writeable and x.shape[1] == self.input_dim):  # fmt: skip
            x = self._converted(x)
        batch = x.shape[0]
        if batch == 1 and not self._one_by_batch:  # converted into one example
            return self.forward(x, mode, masks, seed)
        if batch == 0:
            empty = [np.zeros((0, k), np.uint8) for k in self._blocks]
            return np.zeros((0, self.n_classes), np.float32), empty
        decided = np.empty((len(self._blocks), batch, self._max_blocks), np.uint8)
        noise = self._no_noise
        if masks is not None:
            for index, k in enumerate(self._blocks):
                decided[index, :, :k] = self._given_mask(index, masks, batch, k)
            code = kernels.GIVEN
        small = batch <= SMALL_BATCH and self._gated
        if code == kernels.SAMPLE and self._draws:
            if small and seed is None:  # unseeded: the kernel draws, as at batch 1 (numpy's costs 1-2 us)
                code = kernels.OWN_SAMPLE
            else:
                noise = self._generator(seed).random(decided.shape, dtype=np.float32)
        if small:
            return self._one_by_one(x, code, noise, decided)
        if self.threads > 1:  # numba's setting is per calling thread (and costs 1.5 us a call)
            numba.set_num_threads(self.threads)
        weights, meta = self._weights, self._meta
        if kernels.batch_kernel_pending():  # a minute without a word looked like a hang (issue 23)
            logging.getLogger("condnet").warning(
                "condnet: compiling the engine's batch kernel for this CPU (about a minute, once: numba "
                "caches it)"
            )
        status, logits = kernels.forward_batch(x, weights, meta, noise, decided, code, self.threads)
        if status:
            raise ValueError(_NON_FINITE)
        return logits, self._masks(decided, batch)

    __call__ = forward

    def _one_by_one(self, x, code, noise, decided) -> tuple[np.ndarray, list[np.ndarray]]:
        """A small batch as that many batch-1 calls (one compiled call), with the batch's given masks (code
        GIVEN) or draws (noise, code SAMPLE), so a seed gives the masks the batch path would."""
        logits = np.empty((x.shape[0], self.n_classes), np.float32)
        weights, meta, work, flags = self._weights, self._meta, self._work, self._flags
        status = kernels.forward_few(x, weights, meta, work, flags, code, noise, decided, logits)
        if status:
            raise ValueError(_NON_FINITE)
        return logits, self._masks(decided, x.shape[0])

    def _masks(self, decided, batch) -> list[np.ndarray]:
        """The masks a batch used, per hidden layer at the config's blocks (new arrays)."""
        at = enumerate(zip(self._blocks, self._merged, strict=True))
        return [
            np.ones((batch, k), np.uint8) if merged else decided[i, :, :k].copy() for i, (k, merged) in at
        ]

    def _given_masks_engine(self) -> Engine:
        """The engine with every layer at the config's blocks, which given masks need (made once)."""
        if self._at_config_blocks is None:
            self._at_config_blocks = Engine(
                self._checkpoint, self.threads, self.weights, dense_as_one_block=False
            )
        return self._at_config_blocks

    def _given_flags(self, masks) -> int:
        """Batch 1: the given masks into the fused kernel's flags; the kernel's mode code for them."""
        for index, k in enumerate(self._blocks):
            self._flags[0, index, :k] = self._given_mask(index, masks, 1, k)[0]
        return kernels.GIVEN

    def _generator(self, seed) -> np.random.Generator:
        """The engine's own generator (made once: making one costs 8-10 us), or the caller's."""
        if seed is None:
            return self._rng
        return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def _converted(self, x) -> np.ndarray:
        """x as a C-contiguous, writable (numba's signature) float32 (batch, input_dim) array, or a
        ValueError that says what is wrong."""
        if hasattr(x, "detach"):  # a PyTorch tensor, perhaps one that requires grad (no torch import here)
            x = x.detach().cpu()
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"expected a real-valued (float) input array, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (batch, {self.input_dim}), got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        return x if x.flags.writeable else x.copy()

    def _given_mask(self, index, masks, batch, k) -> np.ndarray:
        mask = np.asarray(masks[index])
        if mask.shape != (batch, k):
            raise ValueError(f"masks[{index}] must have shape {(batch, k)}, got {mask.shape}")
        on = mask != 0
        if (on & (mask != 1)).any():  # 0.5 or NaN: the PyTorch model would scale by it
            raise ValueError(f"masks[{index}] must hold only 0 and 1 (a block is on or off)")
        return np.ascontiguousarray(on, dtype=np.uint8)


# Gated nets take batches of 2-3 one example at a time (one compiled call: from Python each example
# cost ~3 us more than a batch-1 call, RESULTS 10.9): the batch path's groups of one or two examples
# gain little from sharing tiles and pay its set-up (RESULTS 10.2: batch 4 and up mostly faster). A
# dense net's examples share every weight: the batch path (784-1024-1024-10 at batch 2: 1.17x one call).
SMALL_BATCH = 3
_FLOAT32 = np.dtype(np.float32)  # numpy's native float32 dtype is one object: `is` is the fastest test
_NON_FINITE = "the input contains NaN, infinite or float32-overflowing values"
