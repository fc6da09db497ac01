"""The gates: how each hidden layer decides which of its blocks to compute, one file per gate.

This package is the torch-free half of every gate (the config, the checkpoint and the engine read it;
the PyTorch modules are in `condnet.nn.gates`, registered under the same names):

    gate_of(model, layer)  -> the GateSpec of a hidden layer, chosen by the config
    spec.check()           -> ConfigError when the layer's settings do not fit the gate
    spec.tensors()         -> its checkpoint tensors, {name: shape} (suffixes of `policies.LAYER.`)
    spec.score_rows        -> the dot products of its scores per example (its multiply-adds are this
                              times the active inputs)
    spec.lower(tensors)    -> what the engine's kernels run for it (`Lowered`)

A new gate is one module here (a GateSpec subclass with a `name`, found by `register`) and one in
`condnet.nn.gates`; the registry finds both by name. Which gate a layer gets is decided in one place,
`gate_name`: a dense net's layers (model.kind = "nn") and the dense layers of a gated net
(model.gated) get "dense", a bdNN's gated layers "uniform", a condnet's gated layers model.router.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass

import numpy as np

from condnet.errors import ConfigError

DENSE_KIND, UNIFORM_KIND = "nn", "bdnn"  # model.kind values that are not learned routing
NOT_ROUTED = (DENSE_KIND, UNIFORM_KIND)


@dataclass
class LayerSettings:
    """What a gate may read of its hidden layer's configuration."""

    index: int
    n_in: int  # the inputs its scores read (the previous layer's width, the input's, or a view's)
    n_blocks: int
    block_size: int
    k: int  # model.k of this layer (blocks per example, for routers that compute a fixed number)
    tau: float  # model.tau of this layer (target rate; bdNN's block rate)
    p_min: float
    p_max: float


@dataclass
class Lowered:
    """A gate as the engine's kernels run it (see condnet.engine.kernels: the decision codes).

    decision: the kernel decision's name (kernels.DECISIONS); arg: its whole-number argument (k, a
    tree's depth, ...); z, d: the score weights (rows, n_in) and offsets (rows,), None when the gate
    reads no input; rate: a fixed probability (bdNN's tau)."""

    decision: str
    arg: int = 0
    z: np.ndarray | None = None
    d: np.ndarray | None = None
    rate: float | None = None


class GateSpec:
    """The torch-free description of one gate kind; subclasses set `name` and override what differs."""

    name = ""
    router = True  # chosen by model.router (False: chosen by model.kind or model.gated)
    learned = False  # has parameters trained with the network
    draws = False  # sample mode draws random numbers
    scales = False  # its blocks' outputs are scaled by gate values (else by the 0/1 mask)
    thresholds = True  # has a threshold mode (a decision that reads the input)
    sigma_means = "activation probability"  # what its sigma is, for figures (LayerTrace.sigma)

    def __init__(self, layer: LayerSettings):
        self.layer = layer

    def check(self) -> None:
        """Raise ConfigError (naming the field, the value and what is allowed) if the layer does not fit."""

    def tensors(self) -> dict[str, tuple[int, ...]]:
        return {}

    @property
    def score_rows(self) -> int:
        return 0

    def lower(self, tensors: dict[str, np.ndarray]) -> Lowered:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer {self.layer.index}, {self.layer.n_blocks} blocks)"


class BlockScores(GateSpec):
    """A gate that scores every block: Z (n_blocks, n_in) and d (n_blocks,), one dot product per block."""

    def tensors(self):
        return {"Z": (self.layer.n_blocks, self.layer.n_in), "d": (self.layer.n_blocks,)}

    @property
    def score_rows(self) -> int:
        return self.layer.n_blocks


def check_k(layer: LayerSettings) -> None:
    """ConfigError unless model.k of this layer is a number of its blocks (routers computing k blocks)."""
    k, n = layer.k, layer.n_blocks
    if not 1 <= k <= n:
        raise ConfigError(f"model.k[{layer.index}]: got {k!r}; allowed: a whole number from 1 to {n}, blocks")


_REGISTRY: dict[str, type[GateSpec]] = {}


def register(cls: type[GateSpec]) -> type[GateSpec]:
    """Class decorator: make a gate available under its name."""
    if cls.name in _REGISTRY:
        raise ValueError(f"two gates are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


@functools.cache
def import_modules(package: str) -> None:
    """Import every module of `package` once, so that each registers the gate it defines (the
    registries here and in condnet.nn.gates)."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")


def _load_all() -> None:
    import_modules(__name__)


def routers() -> tuple[str, ...]:
    """The names model.router accepts."""
    _load_all()
    return tuple(sorted(name for name, cls in _REGISTRY.items() if cls.router))


def gate_name(model, layer: int) -> str:
    """The gate of hidden layer `layer` of a ModelConfig (see the module docstring)."""
    if model.kind == DENSE_KIND or not model.gated[layer]:
        return "dense"
    if model.kind == UNIFORM_KIND:
        return "uniform"
    return model.router


def gate_class(name: str) -> type[GateSpec]:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"model.router: got {name!r}; allowed: {', '.join(routers())}")
    return _REGISTRY[name]


@dataclass
class View:
    """What the gates' scores read (model.router_input): the layer's own input ("layer"), the network's
    input ("input"), the input image average-pooled to `pooled` x `pooled` per channel ("poolS"), or
    one learned linear projection of the input to `projected` values shared by every gate ("projR": a
    rank-R factor common to all routers' score weights, so R x input multiply-adds are paid once, not
    per router). Views other than "layer" are computed once per example. Images are channel-major:
    `channels` x `side` x `side`."""

    kind: str  # layer | input | pool | proj
    channels: int = 0
    side: int = 0
    pooled: int = 0
    projected: int = 0

    @property
    def size(self) -> int:
        """Values in a computed view (pool, proj); 0 for the views that are the layer's or net's input."""
        return self.projected if self.kind == "proj" else self.channels * self.pooled * self.pooled

    @property
    def reads_layer(self) -> bool:
        """Each gate reads its own layer's (active) input, as in the paper: no view is computed."""
        return self.kind == "layer"

    def macs(self, input_dim: int) -> int:
        """Multiply-adds per example of computing the view: one add per input to pool, one multiply-add
        per weight to project, none to read an input as it is."""
        return {"pool": input_dim, "proj": input_dim * self.projected}.get(self.kind, 0)

    def inputs(self, layer_inputs: int, input_dim: int) -> int:
        """How many values a gate's scores read, given its layer's input size."""
        return {"layer": layer_inputs, "input": input_dim}.get(self.kind, self.size)


def view_kind(router_input) -> str | None:
    """layer, input, pool or proj for a valid model.router_input, else None."""
    if router_input in ("layer", "input"):
        return router_input
    text = str(router_input)
    for kind in ("pool", "proj"):
        if text.startswith(kind) and text[4:].isdigit() and int(text[4:]) >= 1:
            return kind
    return None


def square_image(input_dim: int) -> tuple[int, int] | None:
    """(channels, side) of a channel-major image of 1 or 3 square channels with `input_dim` values (MNIST
    1 x 28 x 28; CIFAR-10, SVHN 3 x 32 x 32), else None."""
    for channels in (1, 3):
        side = int(round((input_dim / channels) ** 0.5))
        if side * side * channels == input_dim:
            return channels, side
    return None


def router_view(model, input_dim: int) -> View:
    """The View of a ModelConfig for inputs of `input_dim` values (images: 1 or 3 square channels; a net
    without gates reads none: "layer"); ConfigError when a pooled view or projection does not fit it."""
    kind = view_kind(model.router_input)
    if not is_gated(model):  # no gate reads a view
        return View("layer")
    if kind == "proj":
        projected = int(model.router_input[4:])
        if projected > input_dim:
            raise ConfigError(f"model.router_input: got {model.router_input!r}; allowed for {input_dim} "
                              f"inputs: proj1 to proj{input_dim} (wider adds nothing)")  # fmt: skip
        return View(kind, projected=projected)
    if kind != "pool":
        return View(kind)
    pooled = int(model.router_input[4:])
    image = square_image(input_dim)
    if image is None:
        raise ConfigError(f"model.router_input: got {model.router_input!r}; allowed for {input_dim} inputs "
                          f"(not a square image of 1 or 3 channels): layer or input")  # fmt: skip
    channels, side = image
    if side % pooled:
        divisors = ", ".join(f"pool{d}" for d in range(1, side + 1) if side % d == 0)
        shape = f"{channels} x {side} x {side}"
        raise ConfigError(f"model.router_input: got {model.router_input!r}; allowed for {shape} images: "
                          f"layer, input, {divisors}")  # fmt: skip
    return View(kind, channels, side, pooled)


def gate_of(model, input_dim: int, layer: int) -> GateSpec:
    """The GateSpec of hidden layer `layer` of a ModelConfig whose per-layer fields are lists (config
    validation asks with input_dim 0: its checks do not depend on the inputs)."""
    dims = [input_dim, *model.widths]
    view = router_view(model, input_dim) if input_dim else View("layer")
    settings = LayerSettings(
        index=layer,
        n_in=view.inputs(dims[layer], input_dim),
        n_blocks=model.widths[layer] // model.block_size[layer],
        block_size=model.block_size[layer],
        k=model.k[layer],
        tau=model.tau[layer],
        p_min=model.p_min,
        p_max=model.p_max,
    )
    return gate_class(gate_name(model, layer))(settings)


def gates_of(model, input_dim: int) -> list[GateSpec]:
    return [gate_of(model, input_dim, layer) for layer in range(len(model.widths))]


def has_threshold_mode(model) -> bool:
    """False when some layer's gate does not read its input (bdNN): threshold mode means nothing."""
    return all(gate_class(gate_name(model, layer)).thresholds for layer in range(len(model.widths)))


def is_gated(model) -> bool:
    """Whether some hidden layer of a ModelConfig decides its blocks per example."""
    return any(gate_name(model, layer) != "dense" for layer in range(len(model.widths)))


PROJECTION = "router_projection"  # the checkpoint name of a "projR" view's linear map


def tensor_shapes(model, input_dim: int) -> dict[str, tuple[int, ...]]:
    """Every gate's checkpoint tensors, {`policies.LAYER.NAME`: shape}, and a "projR" view's
    {`router_projection.weight`: (R, input_dim), `.bias`: (R,)} (CondNet's state_dict names)."""
    shapes = {}
    view = router_view(model, input_dim)
    if view.kind == "proj":  # shared by every gate
        shapes[f"{PROJECTION}.weight"] = (view.projected, input_dim)
        shapes[f"{PROJECTION}.bias"] = (view.projected,)
    for spec in gates_of(model, input_dim):
        for name, shape in spec.tensors().items():
            shapes[f"policies.{spec.layer.index}.{name}"] = shape
    return shapes
