"""The inference engine: a trained CondNet compiled into block-sparse kernels whose cost follows the
active blocks (paper section 3.4: ((H * M_H) W) * M_O). It needs numpy, numba, safetensors and
threadpoolctl, never PyTorch: a run directory is read by `condnet.checkpoint`.

Per hidden layer the engine evaluates the policy, decides the mask (threshold or sampling, as the
PyTorch model does), and computes only the active output blocks from the active input blocks.
- Batch 1 (latency): one fused numba call runs the whole network, policies included, reading only
  active blocks; its arguments are few and its buffers made once, so a call costs little more than
  its arithmetic. It never falls back to a dense product.
- Top-k routers (condnet.nn.router): the router's scores take the policy's place; the k chosen blocks'
  outputs are scaled by their gate values after their product (both paths).
- Batch > 1: layer by layer; the policy and the layer product are block kernels that group the
  examples by output block (`kernels.block_layer`; the policy is one output block, always on). A layer
  with every block on, or whose work fraction is above its measured crossover (`Engine.calibrate`),
  takes the dense product (numpy's BLAS sgemm), then the bias, activation and mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from condnet.checkpoint import Checkpoint, read_checkpoint
from condnet.config import MODES
from condnet.engine import kernels
from condnet.engine.layout import pack, policy_tiles, to_panels, to_tiles
from condnet.engine.timing import interleaved_medians

ACTIVATIONS = {"tanh": kernels.TANH, "relu": kernels.RELU}
_MODE_CODES = {"threshold": kernels.THRESHOLD, "sample": kernels.SAMPLE}


@dataclass
class EngineLayer:
    """One layer, laid out for the kernels. Dense input/output = one block that is always on."""

    tiles: np.ndarray  # (n_out_blocks, n_in_blocks, bs_out, bs_in): the batch-1 kernel's layout
    panels: np.ndarray  # the same weights as the batched micro-kernel reads them (layout.to_panels)
    bias: np.ndarray  # (n_out,)
    weight_t: np.ndarray  # W^T (n_in, n_out), contiguous, for the dense product (BLAS is fastest so)
    activation: int
    z_tiles: np.ndarray | None = None  # learned policy: Z cut by input block, (n_in_blocks, n_blocks, bs_in)
    z_panels: np.ndarray | None = None  # Z as the batched micro-kernel reads it (one output block)
    d: np.ndarray | None = None
    tau: float | None = None  # uniform policy (bdNN)
    top_k: int = 0  # a top-k router (z_tiles, d are its scores) computing this many blocks; 0: not one
    tree_depth: int = 0  # a tree router's depth (z_tiles, d: its n_blocks - 1 nodes); 0: not one
    # work fraction (active input x active output fraction) above which the dense product is faster,
    # per calibrated batch size (batch 1 runs the fused kernel); measured by Engine.calibrate. Empty:
    # only a layer with every block on takes the dense product.
    crossovers: dict[int, float] = field(default_factory=dict)

    def crossover(self, batch: int) -> float:
        """The crossover measured at the calibrated batch size nearest to `batch` (in ratio)."""
        if not self.crossovers:
            return 1.0
        nearest = min(self.crossovers, key=lambda b: abs(math.log(b / batch)))
        return self.crossovers[nearest]

    @property
    def n_out_blocks(self) -> int:
        return self.tiles.shape[0]

    @property
    def bs_out(self) -> int:
        return self.tiles.shape[2]


def as_checkpoint(network) -> Checkpoint:
    """A Checkpoint as it is; a PyTorch CondNet converted to arrays (torch is then loaded already)."""
    if isinstance(network, Checkpoint):
        return network
    if hasattr(network, "state_dict"):
        from condnet.train.checkpoint import model_arrays

        return model_arrays(network)
    raise TypeError(f"Engine takes a Checkpoint or a CondNet, got {type(network).__name__}")


class Engine:
    """Block-sparse inference for a trained CondNet.

    Engine(network, threads=1): network is a `Checkpoint` (see `Engine.from_run`) or a PyTorch CondNet.
    forward(x: (batch, input_dim) array, mode, masks=None, seed=None) -> (logits, masks)
    - mode "threshold" (the default): block on iff sigma > 0.5 (sigma is summed in another order than
      PyTorch's, so a block whose sigma is within float rounding of 0.5 may be decided the other way);
      "sample": Bernoulli(sigma) drawn from numpy's generator: `seed` (an int or a Generator) makes
      the draws reproducible; None uses the engine's own generator, and at batch 1 numba's, drawn
      inside the kernel (not reproducible; the engine's draws are not torch's: to compare with the
      PyTorch model, pass the same `masks`);
    - masks: per hidden layer (batch, n_blocks) arrays of 0/1 that replace the policy's decision
      (other values are refused, as by the PyTorch model).
    - x: float32 C-contiguous is taken as it is; other real dtypes and layouts are converted. NaN or
      infinite inputs are refused. A batch of 0 gives empty outputs.
    Returns new arrays: logits (batch, n_classes) float32, masks (batch, n_blocks) uint8 per layer.
    One engine serves one call at a time (its batch-1 buffers are reused); use one engine per thread.
    The dense fallback is off until `calibrate()` has measured this machine (about two seconds).
    """

    def __init__(self, network, threads: int = 1):
        checkpoint = as_checkpoint(network)
        cfg, tensors = checkpoint.model, checkpoint.tensors
        self.input_dim, self.n_classes = checkpoint.input_dim, checkpoint.n_classes
        self.p_min, self.p_max = np.float32(cfg.p_min), np.float32(cfg.p_max)
        n_hidden = len(cfg.widths)
        sizes = [self.input_dim, *cfg.block_size, self.n_classes]  # input and output: one block
        self.layers: list[EngineLayer] = []
        for index in range(n_hidden + 1):
            name = f"hidden.{index}" if index < n_hidden else "output"
            weight = np.asarray(tensors[f"{name}.weight"], np.float32)
            layer = EngineLayer(
                tiles=to_tiles(weight, sizes[index], sizes[index + 1]),
                panels=to_panels(weight, sizes[index], sizes[index + 1]),
                bias=np.array(tensors[f"{name}.bias"], np.float32),
                weight_t=np.ascontiguousarray(weight.T),
                activation=ACTIVATIONS[cfg.activation] if index < n_hidden else kernels.IDENTITY,
            )
            gated = index < n_hidden and cfg.kind != "nn" and cfg.gated[index]  # else: every block on
            if gated and cfg.router == "tree" and layer.n_out_blocks == 1:
                gated = False  # a one-leaf tree: that block, with probability 1
            if gated and cfg.kind == "condnet":
                z = np.asarray(tensors[f"policies.{index}.Z"], np.float32)
                layer.z_tiles = policy_tiles(z, sizes[index])
                layer.z_panels = to_panels(z, sizes[index], z.shape[0])
                layer.d = np.array(tensors[f"policies.{index}.d"], np.float32)
                layer.top_k = cfg.k[index] if cfg.router == "topk" else 0
                layer.tree_depth = (layer.n_out_blocks.bit_length() - 1) if cfg.router == "tree" else 0
            elif gated and cfg.kind == "bdnn":
                layer.tau = cfg.tau[index]
            self.layers.append(layer)
        self._blocks = [layer.n_out_blocks for layer in self.hidden]
        self._weights, self._meta = pack(self.layers, cfg.p_min, cfg.p_max)
        # batch 1: the fused kernel's buffers (see kernels.work_layout), and views of them
        max_blocks, o_logits, *_, size = kernels.work_layout(self._meta)
        self._work = np.zeros(size, np.float32)
        self._noise = self._work[: n_hidden * max_blocks].reshape(n_hidden, max_blocks)
        self._logits = self._work[o_logits : o_logits + self.n_classes].reshape(1, self.n_classes)
        self._flags = np.zeros((2, n_hidden, max_blocks), np.uint8)
        self._decided = [self._flags[1, i : i + 1, :k] for i, k in enumerate(self._blocks)]
        self._rng = np.random.default_rng()
        self._one_example = (1, self.input_dim)
        # only Bernoulli policies draw (a top-k or tree router decides deterministically)
        self._draws = any(layer.tau is not None or (layer.z_tiles is not None and not layer.top_k
                          and not layer.tree_depth) for layer in self.hidden)  # fmt: skip
        self.set_threads(threads)

    @classmethod
    def from_run(cls, run_dir: str | Path, threads: int = 1) -> Engine:
        """The engine of a trained run's checkpoint (read and verified without PyTorch)."""
        return cls(read_checkpoint(run_dir), threads)

    def set_threads(self, threads: int) -> None:
        """Use `threads` cores (numba kernels and the BLAS of the dense product alike)."""
        available = numba.config.NUMBA_NUM_THREADS
        if not isinstance(threads, int) or not 1 <= threads <= available:
            raise ValueError(
                f"threads must be a whole number from 1 to {available} on this machine, got {threads}"
            )
        self.threads = threads
        numba.set_num_threads(threads)
        threadpool_limits(threads, user_api="blas")
        parallel = threads > 1
        self._layer_kernel = (
            partial(kernels.block_layer_parallel, threads=threads) if parallel else kernels.block_layer
        )

    @property
    def hidden(self) -> list[EngineLayer]:
        return self.layers[:-1]

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
        if getattr(x, "shape", None) == self._one_example:  # batch 1, the latency path: one fused call
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
                and x.shape[1] == self.input_dim):  # fmt: skip
            x = self._converted(x)
        batch = x.shape[0]
        if batch == 1:  # converted into one example
            return self.forward(x, mode, masks, seed)
        if batch == 0:
            empty = [np.zeros((0, k), np.uint8) for k in self._blocks]
            return np.zeros((0, self.n_classes), np.float32), empty
        if kernels.count_nonfinite(x):
            raise ValueError(_NON_FINITE)
        rng = self._generator(seed) if code == kernels.SAMPLE and masks is None else None
        h, in_mask, drawn = x, np.ones((batch, 1), np.uint8), []
        for index, layer in enumerate(self.layers):
            gates = None
            if index < len(self.hidden):
                out_mask, gates = self._decide(index, layer, h, in_mask, code, masks, rng)
                drawn.append(out_mask)
            else:
                out_mask = np.ones((batch, 1), np.uint8)
            h = self._product(layer, h, in_mask, out_mask)
            if gates is not None:  # top-k: each computed block's output scaled by its gate value
                h.reshape(batch, layer.n_out_blocks, layer.bs_out)[...] *= gates[:, :, None]
            in_mask = out_mask
        return h, drawn

    __call__ = forward

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
        """x as a C-contiguous float32 (batch, input_dim) array, or a ValueError that says what is wrong."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ValueError(f"expected a real-valued (float) input array, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (batch, {self.input_dim}), got {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _given_mask(self, index, masks, batch, k) -> np.ndarray:
        mask = np.asarray(masks[index])
        if mask.shape != (batch, k):
            raise ValueError(f"masks[{index}] must have shape {(batch, k)}, got {mask.shape}")
        on = mask != 0
        if (on & (mask != 1)).any():  # 0.5 or NaN: the PyTorch model would scale by it
            raise ValueError(f"masks[{index}] must hold only 0 and 1 (a block is on or off)")
        return np.ascontiguousarray(on, dtype=np.uint8)

    def _decide(self, index, layer, h, in_mask, code, masks, rng) -> tuple[np.ndarray, np.ndarray | None]:
        """The layer's mask (batch, n_blocks) uint8, and a top-k router's gate values (else None)."""
        batch, k = h.shape[0], layer.n_out_blocks
        given = None if masks is None else self._given_mask(index, masks, batch, k)
        if layer.tree_depth:
            nodes = np.empty((batch, k - 1), np.float32)
            always_on = np.ones((batch, 1), np.uint8)
            self._layer_kernel(h, in_mask, layer.z_panels, layer.d, always_on, kernels.IDENTITY, nodes)
            on = _tree_path(nodes) if given is None else given
            return on, _leaf_probabilities(nodes) * on
        if layer.z_tiles is not None and (given is None or layer.top_k):
            # the policy is a layer with one output block, always on: the block kernel reads only the
            # active input blocks (3072-640-640-10 at batch 50, density 0.18: both policies took
            # 0.35 ms as a dense product, 0.11 ms this way)
            logits = np.empty((batch, k), np.float32)
            always_on = np.ones((batch, 1), np.uint8)
            self._layer_kernel(h, in_mask, layer.z_panels, layer.d, always_on, kernels.IDENTITY, logits)
            if layer.top_k:
                on = _top_k(logits, layer.top_k) if given is None else given
                return on, _gate_values(logits, on)
            noise = logits if code == kernels.THRESHOLD else rng.random((batch, k), dtype=np.float32)
            decided = np.empty((batch, k), np.uint8)
            kernels.decide(logits, self.p_min, self.p_max, code, noise, decided)
            return decided, None
        if given is not None:
            return given, None
        if layer.tau is None:
            return np.ones((batch, k), np.uint8), None  # a dense layer
        if code == kernels.THRESHOLD:
            return np.full((batch, k), layer.tau > 0.5, np.uint8), None
        return (rng.random((batch, k), dtype=np.float32) < np.float32(layer.tau)).astype(np.uint8), None

    def calibrate(self, densities=(0.3, 0.45, 0.6, 0.75, 0.9, 1.0), batches=(8, 64, 256), repeats=7) -> None:
        """Measure, per layer, batch size and on this machine, where the dense product overtakes the
        block kernel (it depends on the batch: the BLAS GEMM gains more from large batches).

        For each density d, random masks at rate d (the first layer's input and the output layer's
        output stay dense) are timed through both paths; the crossover is the first work fraction at
        which the dense product is at least as fast.
        """
        rng = np.random.default_rng(0)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            n_in_blocks, bs_in = layer.tiles.shape[1], layer.tiles.shape[3]
            layer.crossovers = {}
            for batch in batches:
                layer.crossovers[batch] = math.inf
                for density in densities:
                    in_mask = rng.random((batch, n_in_blocks)) < (1.0 if index == 0 else density)
                    out_mask = rng.random((batch, layer.n_out_blocks)) < (1.0 if index == last else density)
                    in_mask, out_mask = in_mask.astype(np.uint8), out_mask.astype(np.uint8)
                    h = rng.random((batch, n_in_blocks * bs_in), dtype=np.float32)
                    h *= np.repeat(in_mask, bs_in, axis=1)
                    times = interleaved_medians(
                        {
                            "dense": partial(self._dense_product, layer, h, out_mask),
                            "block": partial(self._block_product, layer, h, in_mask, out_mask),
                        },
                        repeats,
                        warmup=2,
                    )
                    if times["dense"] <= times["block"]:
                        layer.crossovers[batch] = float(_work_fraction(in_mask, out_mask))
                        break

    def _product(self, layer: EngineLayer, h, in_mask, out_mask) -> np.ndarray:
        if _work_fraction(in_mask, out_mask) >= layer.crossover(h.shape[0]):
            return self._dense_product(layer, h, out_mask)
        return self._block_product(layer, h, in_mask, out_mask)

    def _dense_product(self, layer: EngineLayer, h, out_mask) -> np.ndarray:
        """The dense product (numpy's BLAS sgemm), then bias, activation and mask in one pass."""
        out = h @ layer.weight_t
        kernels.finish_dense(out, layer.bias, layer.activation, out_mask)
        return out

    def _block_product(self, layer: EngineLayer, h, in_mask, out_mask) -> np.ndarray:
        out = np.zeros((h.shape[0], layer.bias.shape[0]), np.float32)
        self._layer_kernel(h, in_mask, layer.panels, layer.bias, out_mask, layer.activation, out)
        return out


_FLOAT32 = np.dtype(np.float32)  # numpy's native float32 dtype is one object: `is` is the fastest test
_NON_FINITE = "the input contains NaN, infinite or float32-overflowing values"


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """uint8 mask of the k largest scores of each row."""
    on = np.zeros(scores.shape, np.uint8)
    np.put_along_axis(on, np.argpartition(-scores, k - 1, axis=1)[:, :k], 1, axis=1)
    return on


def _tree_path(nodes: np.ndarray) -> np.ndarray:
    """uint8 mask of the leaf each row's path ends at (right where a node's score is > 0)."""
    batch, n_nodes = nodes.shape
    position, level, rows = np.zeros(batch, np.int64), 0, np.arange(batch)
    while level < n_nodes:
        position = 2 * position + (nodes[rows, level + position] > 0)
        level = 2 * level + 1
    on = np.zeros((batch, n_nodes + 1), np.uint8)
    on[rows, position] = 1
    return on


def _leaf_probabilities(nodes: np.ndarray) -> np.ndarray:
    """Each leaf's path probability (condnet.nn.router.leaf_probabilities), float32."""
    probs, level = np.ones((nodes.shape[0], 1), np.float32), 0
    while probs.shape[1] < nodes.shape[1] + 1:
        width = probs.shape[1]
        right = 1 / (1 + np.exp(-nodes[:, level : level + width]))
        probs = np.stack([probs * (1 - right), probs * right], axis=2).reshape(len(probs), 2 * width)
        level += width
    return probs.astype(np.float32)


def _gate_values(scores: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Softmax of the scores over the blocks on, 0 elsewhere (condnet.nn.router.gate_values)."""
    masked = np.where(on != 0, scores, -np.inf)
    peak = masked.max(axis=1, keepdims=True)
    weights = np.exp(masked - np.where(np.isfinite(peak), peak, 0)).astype(np.float32)
    total = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def _work_fraction(in_mask: np.ndarray, out_mask: np.ndarray) -> float:
    """Fraction of the dense product the block kernel would do (count_nonzero: ~1 us; mean: ~10)."""
    return np.count_nonzero(in_mask) / in_mask.size * np.count_nonzero(out_mask) / out_mask.size
