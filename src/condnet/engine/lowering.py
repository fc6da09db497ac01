"""A checkpoint lowered to the engine's layers: each hidden layer's gate (condnet.gates) becomes a kernel
decision (kernels.DECISIONS) with its argument and arrays. The only place where the engine learns what
a gate is; the gate itself says how it lowers (`GateSpec.lower`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from condnet import gates
from condnet.checkpoint import Checkpoint
from condnet.engine import kernels

ACTIVATIONS = {"tanh": kernels.TANH, "relu": kernels.RELU}


@dataclass
class EngineLayer:
    """One layer as the kernels need it, before `layout.pack` lays it out. A dense input or output is
    one block that is always on."""

    weight: np.ndarray  # W (n_out, n_in)
    bias: np.ndarray  # (n_out,)
    bs_in: int
    bs_out: int
    activation: int
    decision: int = kernels.DENSE  # kernels.DECISIONS
    arg: int = 0  # the decision's argument (k, a tree's depth)
    z: np.ndarray | None = None  # score weights (rows, n_in)
    d: np.ndarray | None = None  # score offsets (rows,)
    rate: float | None = None  # a fixed rate (bdNN's tau)
    view: int = kernels.VIEW_LAYER  # what the scores read (kernels.VIEWS; condnet.gates.View)
    view_shape: tuple[int, int, int] = (0, 0, 0)  # a pooled view's (channels, side, pooled side)
    view_size: int = 0  # a computed view's length (pooled or projected), else 0
    projection: tuple[np.ndarray, np.ndarray] | None = None  # the first layer's: a "projR" view's (W, b)

    @property
    def n_out_blocks(self) -> int:
        return self.weight.shape[0] // self.bs_out


def lower(checkpoint: Checkpoint, dense_as_one_block: bool = False) -> list[EngineLayer]:
    """Every layer of the checkpoint, hidden layers then the output layer. dense_as_one_block: a hidden
    layer whose gate is dense is one block of its whole width, whatever its block size (every block is on
    anyway, and small tiles cost: 784-1024-1024-10 in blocks of 16 took 1.26-1.49x longer, RESULTS 10.12)."""
    cfg, tensors = checkpoint.model, checkpoint.tensors
    n_hidden = len(cfg.widths)
    at = enumerate(zip(cfg.widths, cfg.block_size, strict=True))
    blocks = [
        width if dense_as_one_block and gates.gate_name(cfg, i) == "dense" else size
        for i, (width, size) in at
    ]
    sizes = [checkpoint.input_dim, *blocks, checkpoint.n_classes]  # input and output: one block
    view = gates.router_view(cfg, checkpoint.input_dim)
    layers = []
    for index in range(n_hidden + 1):
        name = f"hidden.{index}" if index < n_hidden else "output"
        layer = EngineLayer(
            weight=np.asarray(tensors[f"{name}.weight"], np.float32),
            bias=np.asarray(tensors[f"{name}.bias"], np.float32),
            bs_in=sizes[index],
            bs_out=sizes[index + 1],
            activation=ACTIVATIONS[cfg.activation] if index < n_hidden else kernels.IDENTITY,
        )
        if index < n_hidden:
            spec = gates.gate_of(cfg, checkpoint.input_dim, index)
            own = {k.rpartition(".")[2]: v for k, v in tensors.items() if k.startswith(f"policies.{index}.")}
            lowered = spec.lower(own)
            layer.decision, layer.arg = kernels.DECISIONS[lowered.decision], lowered.arg
            layer.z = None if lowered.z is None else np.asarray(lowered.z, np.float32)
            layer.d = None if lowered.d is None else np.asarray(lowered.d, np.float32)
            layer.rate = lowered.rate
            layer.view, layer.view_shape = kernels.VIEWS[view.kind], (view.channels, view.side, view.pooled)
            layer.view_size = view.size
            if view.kind == "proj" and index == 0:
                weight, bias = (tensors[f"{gates.PROJECTION}.{k}"] for k in ("weight", "bias"))
                layer.projection = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
        layers.append(layer)
    return layers


def draws(layers: list[EngineLayer]) -> bool:
    """Whether sample mode draws random numbers for some layer (the others decide deterministically)."""
    return any(layer.decision in (kernels.POLICY, kernels.UNIFORM) for layer in layers)
