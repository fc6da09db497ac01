"""The inference engine: a trained CondNet compiled into block-sparse kernels whose cost follows the
active blocks (paper section 3.4: ((H * M_H) W) * M_O).

Per hidden layer the engine evaluates the policy, decides the mask (threshold or seeded sampling, as
the PyTorch model does), and computes only the active output blocks from the active input blocks.
- Batch 1 (latency): one fused numba call runs the whole network, policies included, reading only
  active blocks. It never falls back to a dense product.
- Batch > 1: layer by layer; the policy and the layer product are block kernels that group the
  examples by output block (`kernels.block_layer`; the policy is one output block, always on), and a
  layer whose work fraction is above its measured crossover (`Engine.calibrate`) takes PyTorch's dense
  product, then the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numba
import numpy as np
import torch

from condnet.engine import kernels
from condnet.engine.layout import pack, policy_tiles, to_tiles
from condnet.engine.timing import interleaved_medians
from condnet.nn.condnet import MODES, CondNet
from condnet.train.checkpoint import load_checkpoint

ACTIVATIONS = {"tanh": kernels.TANH, "relu": kernels.RELU}
_MODE_CODES = {"threshold": kernels.THRESHOLD, "sample": kernels.SAMPLE}


@dataclass
class EngineLayer:
    """One layer, laid out for the kernels. Dense input/output = one block that is always on."""

    tiles: np.ndarray  # (n_out_blocks, n_in_blocks, bs_out, bs_in)
    bias: np.ndarray  # (n_out,)
    weight: torch.Tensor  # (n_out, n_in), for the dense fallback
    activation: int
    z_tiles: np.ndarray | None = None  # learned policy: Z cut by input block, (n_in_blocks, n_blocks, bs_in)
    d: np.ndarray | None = None
    tau: float | None = None  # uniform policy (bdNN)
    # work fraction (active input x active output fraction) above which the dense product is faster,
    # per calibrated batch size (batch 1 runs the fused kernel); measured by Engine.calibrate. Empty:
    # never fall back.
    crossovers: dict[int, float] = field(default_factory=dict)

    def crossover(self, batch: int) -> float:
        """The crossover measured at the calibrated batch size nearest to `batch` (in ratio)."""
        if not self.crossovers:
            return math.inf
        nearest = min(self.crossovers, key=lambda b: abs(math.log(b / batch)))
        return self.crossovers[nearest]

    @property
    def n_out_blocks(self) -> int:
        return self.tiles.shape[0]

    @property
    def bs_out(self) -> int:
        return self.tiles.shape[2]


class Engine:
    """Block-sparse inference for a trained CondNet.

    forward(x: (batch, input_dim) float32 array, mode, masks=None, seed=None) -> (logits, masks)
    - mode "threshold": block on iff sigma > 0.5 (sigma is summed in another order than PyTorch's, so
      a block whose sigma is within float rounding of 0.5 may be decided the other way);
      "sample": Bernoulli(sigma) from numpy's generator seeded with `seed` (the engine's draws are
      not torch's: to compare with the PyTorch model, pass the same `masks`);
    - masks: per hidden layer (batch, n_blocks) arrays of 0/1 that replace the policy's decision.
    The dense fallback is off until `calibrate()` has measured this machine (about two seconds).
    """

    def __init__(self, model: CondNet, threads: int = 1):
        self.input_dim, self.n_classes = model.input_dim, model.n_classes
        self.p_min, self.p_max = np.float32(model.cfg.p_min), np.float32(model.cfg.p_max)
        act = self._activation = ACTIVATIONS[model.cfg.activation]
        sizes = [model.input_dim, *model.block_sizes, model.n_classes]  # input and output: one block
        self.layers: list[EngineLayer] = []
        for index, linear in enumerate([*model.hidden, model.output]):
            bs_in, bs_out = sizes[index], sizes[index + 1]
            layer = EngineLayer(
                tiles=to_tiles(linear.weight, bs_in, bs_out),
                bias=linear.bias.detach().to(torch.float32).numpy().copy(),
                weight=linear.weight.detach().to(torch.float32).clone(),
                activation=act if index < len(model.hidden) else kernels.IDENTITY,
            )
            if index < len(model.hidden) and model.cfg.kind == "condnet":
                policy = model.policies[index]
                layer.z_tiles = policy_tiles(policy.Z, bs_in)
                layer.d = policy.d.detach().to(torch.float32).numpy().copy()
            elif index < len(model.hidden) and model.cfg.kind == "bdnn":
                layer.tau = model.cfg.tau[index]
            self.layers.append(layer)
        self._flat, self._meta = pack(self.layers)
        self._taus = np.array([-1.0 if layer.tau is None else layer.tau for layer in self.hidden], np.float32)
        self._blocks = [layer.n_out_blocks for layer in self.hidden]
        width = (len(self._blocks), max(self._blocks))
        self._one_buffers = (
            np.zeros(width, np.uint8), np.empty(width, np.uint8), np.empty(self.n_classes, np.float32),
            np.zeros(width, np.float32),
        )  # fmt: skip
        self.set_threads(threads)

    @classmethod
    def from_run(cls, run_dir: str | Path, threads: int = 1) -> Engine:
        return cls(load_checkpoint(run_dir), threads)

    def set_threads(self, threads: int) -> None:
        """Use `threads` cores (numba kernels and the dense fallback alike)."""
        available = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= available:
            raise ValueError(f"threads must be between 1 and {available} on this machine, got {threads}")
        self.threads = threads
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
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
        x = self._check_input(x)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        batch = x.shape[0]
        if batch == 1:
            return self._forward_one(x[0], mode, masks, rng)
        h, in_mask, drawn = x, np.ones((batch, 1), np.uint8), []
        for index, layer in enumerate(self.layers):
            if index < len(self.hidden):
                out_mask = self._decide(index, layer, h, in_mask, mode, masks, rng)
                drawn.append(out_mask)
            else:
                out_mask = np.ones((batch, 1), np.uint8)
            h = self._product(layer, h, in_mask, out_mask)
            in_mask = out_mask
        return h, drawn

    __call__ = forward

    def _forward_one(self, x, mode, masks, rng):
        """Batch 1: one fused kernel call for the whole network (the latency path). Its buffers are
        made once per engine: at batch 1, allocations cost as much as the arithmetic."""
        given, decided, logits, zeros = self._one_buffers
        code = kernels.GIVEN if masks is not None else _MODE_CODES[mode]
        if code == kernels.GIVEN:
            for index, layer in enumerate(self.hidden):
                given[index, : layer.n_out_blocks] = self._given_mask(index, masks, 1, layer.n_out_blocks)[0]
        noise = rng.random(given.shape, dtype=np.float32) if code == kernels.SAMPLE else zeros
        policy = (self._taus, self.p_min, self.p_max)
        kernels.forward_one(
            x, self._flat, self._meta, *policy, self._activation, code, noise, given, decided, logits
        )
        decided = decided.copy()  # one copy, then views: the buffers are reused by the next call
        return logits[None, :].copy(), [decided[i : i + 1, :k] for i, k in enumerate(self._blocks)]

    def _given_mask(self, index, masks, batch, k) -> np.ndarray:
        mask = np.asarray(masks[index])
        if mask.shape != (batch, k):
            raise ValueError(f"masks[{index}] must have shape {(batch, k)}, got {mask.shape}")
        return np.ascontiguousarray(mask != 0, dtype=np.uint8)

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected input of shape (batch, {self.input_dim}), got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        # one pass, no temporary: small inputs are counted in numba (1 us at batch 1; numpy's sum takes
        # 3); large ones summed by torch on the engine's threads (NaN and inf propagate into the sum)
        small = x.size <= 65536
        if kernels.count_nonfinite(x) if small else not math.isfinite(torch.from_numpy(x).sum().item()):
            raise ValueError("the input contains NaN, infinite or float32-overflowing values")
        return x

    def _decide(self, index, layer, h, in_mask, mode, masks, rng) -> np.ndarray:
        batch, k = h.shape[0], layer.n_out_blocks
        if masks is not None:
            return self._given_mask(index, masks, batch, k)
        if layer.z_tiles is not None:
            # the policy is a layer with one output block, always on: the block kernel reads only the
            # active input blocks (3072-640-640-10 at batch 50, density 0.18: both policies took
            # 0.35 ms as PyTorch's dense product, 0.11 ms this way)
            logits = np.empty((batch, k), np.float32)
            always_on = np.ones((batch, 1), np.uint8)
            self._layer_kernel(h, in_mask, layer.z_tiles[None], layer.d, always_on, kernels.IDENTITY, logits)
            code = _MODE_CODES[mode]
            noise = logits if code == kernels.THRESHOLD else rng.random((batch, k), dtype=np.float32)
            decided = np.empty((batch, k), np.uint8)
            kernels.decide(logits, self.p_min, self.p_max, code, noise, decided)
            return decided
        if layer.tau is not None:
            sigma = np.full((batch, k), layer.tau, np.float32)
        else:
            return np.ones((batch, k), np.uint8)  # dense NN
        if mode == "threshold":
            return (sigma > 0.5).astype(np.uint8)
        return (rng.random((batch, k), dtype=np.float32) < sigma).astype(np.uint8)

    def calibrate(self, densities=(0.3, 0.45, 0.6, 0.75, 0.9, 1.0), batches=(8, 64, 256), repeats=7) -> None:
        """Measure, per layer, batch size and on this machine, where the dense product overtakes the
        block kernel (it depends on the batch: PyTorch's GEMM gains more from large batches).

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
        """The fallback: PyTorch's dense product, then the mask."""
        with torch.inference_mode():
            out = torch.nn.functional.linear(torch.from_numpy(h), layer.weight, torch.from_numpy(layer.bias))
            if layer.activation == kernels.TANH:
                out = torch.tanh(out)
            elif layer.activation == kernels.RELU:
                out = torch.relu(out)
            out = out.numpy()
        if out_mask.shape[1] > 1 and not out_mask.all():
            out *= np.repeat(out_mask, layer.bs_out, axis=1)
        return out

    def _block_product(self, layer: EngineLayer, h, in_mask, out_mask) -> np.ndarray:
        out = np.zeros((h.shape[0], layer.bias.shape[0]), np.float32)
        self._layer_kernel(h, in_mask, layer.tiles, layer.bias, out_mask, layer.activation, out)
        return out


def _work_fraction(in_mask: np.ndarray, out_mask: np.ndarray) -> float:
    """Fraction of the dense product the block kernel would do (count_nonzero: ~1 us; mean: ~10)."""
    return np.count_nonzero(in_mask) / in_mask.size * np.count_nonzero(out_mask) / out_mask.size
