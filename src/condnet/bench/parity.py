"""`condnet parity`: a randomized sweep of the engine against the PyTorch model (the reference).

Each case draws an architecture (1-3 hidden layers, block sizes 1-64, 1-12 blocks), a model kind
(learned policy, uniform bdNN policy, dense), the router (any of condnet.gates.routers(), and k), which
layers of a gated net are dense, what the gates read (the layer's input, the network's input or a
pooled view of it), an activation,
policy densities from 0 to 1, a batch (0; 1 = the batch-1 kernel; up to 300 = the batched kernel),
a mode (threshold, sample, or masks given by the caller) and one or two threads. The engine decides
its masks; the PyTorch model is run with
those masks and must give the same logits within 1e-5 relative. A dense layer must have every block
on; in threshold mode the engine's decisions must be PyTorch's sigma > 0.5 wherever sigma is further
than 1e-5 from 0.5 (closer, float rounding may decide either way).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from condnet import gates
from condnet.config import Config, ModelConfig, validate
from condnet.engine.engine import Engine
from condnet.errors import ConfigError
from condnet.nn.condnet import CondNet

RTOL = 1e-5
SIGMA_TIE = 1e-5  # threshold decisions this close to 0.5 are not checked


@dataclass
class Case:
    index: int
    kind: str
    activation: str
    input_dim: int
    layers: list[tuple[int, int]]  # (n_blocks, block_size) per hidden layer
    n_classes: int
    batch: int
    mode: str  # threshold | sample | given
    threads: int
    densities: list[float]
    gated: list[bool]  # per hidden layer: gated, or a dense layer of a gated net (model.gated)
    router: str  # model.router of a condnet (bernoulli for the others)
    k: list[int]  # model.k per hidden layer
    router_input: str  # what the gates read: layer, input, or poolS (the input a square image)

    def __str__(self) -> str:
        arch = "-".join([str(self.input_dim), *(f"{k}x{b}" for k, b in self.layers), str(self.n_classes)])
        return (f"case {self.index}: {self.kind} {self.activation} {arch} batch {self.batch} {self.mode} "
                f"threads {self.threads} densities {[round(d, 2) for d in self.densities]} "
                f"gated {self.gated} router {self.router} k {self.k} reads {self.router_input}")  # fmt: skip


def draw_case(index: int, rng: np.random.Generator, max_threads: int) -> Case:
    n_hidden = int(rng.integers(1, 4))
    layers = [
        (int(rng.integers(1, 13)), int(rng.choice([1, 2, 3, 4, 8, 16, 33, 64]))) for _ in range(n_hidden)
    ]
    kind = str(rng.choice(["condnet", "condnet", "bdnn", "nn"]))
    routers = gates.routers()  # the paper's policy drawn as often as all the routers together
    weights = [len(routers) - 1 if r == ModelConfig.router else 1 for r in routers]
    routed = kind not in gates.NOT_ROUTED
    router = str(rng.choice(routers, p=np.divide(weights, sum(weights)))) if routed else ModelConfig.router
    if not _fits(router, layers):  # a router that needs a power of 2 of blocks (the tree)
        layers = [(int(rng.choice([1, 2, 4, 8])), size) for _, size in layers]
    densities = [float(rng.choice([0.0, 1.0])) if rng.random() < 0.2 else float(rng.random()) for _ in layers]
    input_dim = int(rng.integers(1, 300))
    router_input = str(rng.choice(["layer", "layer", "input", "pool", "proj"]))
    if router_input == "proj":  # a learned projection to 1-40 values
        router_input = f"proj{rng.integers(1, min(input_dim, 40) + 1)}"
    if router_input == "pool":  # a square image, pooled to a divisor of its side
        side = int(rng.choice([1, 2, 3, 4, 6, 8, 12, 16]))
        input_dim = side * side
        router_input = f"pool{rng.choice([d for d in range(1, side + 1) if side % d == 0])}"
    return Case(
        index,
        kind,
        str(rng.choice(["tanh", "relu"])),
        input_dim,
        layers,
        int(rng.integers(1, 13)),
        int(rng.choice([0, 1, 1, 2, 3, 7, 16, 50, 64, 300])),
        str(rng.choice(["threshold", "sample", "given"])),
        int(rng.integers(1, max_threads + 1)),
        densities,
        [kind != gates.DENSE_KIND and bool(rng.random() < 0.75) for _ in range(n_hidden)],
        router,
        [int(rng.integers(1, n + 1)) for n, _ in layers],
        router_input,
    )


def _fits(router: str, layers) -> bool:
    """Whether the router accepts these (n_blocks, block_size) layers (k = 1)."""
    widths, sizes = [n * b for n, b in layers], [b for _, b in layers]
    try:
        validate(Config(model=ModelConfig(widths=widths, block_size=sizes, router=router)))
    except ConfigError:
        return False
    return True


def build(case: Case, rng: np.random.Generator) -> CondNet:
    """Random weights and non-zero biases; policies near their case's density (bdNN: tau = density)."""
    widths = [k * b for k, b in case.layers]
    taus = [min(max(d, 0.01), 1.0) for d in case.densities]
    sizes = [b for _, b in case.layers]
    cfg = Config(
        model=ModelConfig(
            case.kind,
            widths,
            sizes,
            case.activation,
            taus,
            gated=case.gated,
            router=case.router,
            k=case.k,
            router_input=case.router_input,
        )
    )
    model = CondNet(case.input_dim, case.n_classes, validate(cfg).model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.from_numpy(rng.normal(0, 1 / np.sqrt(max(p.shape[-1], 1)), p.shape).astype(np.float32))
            )
        for gate, density in zip(model.policies, case.densities, strict=True):
            if isinstance(getattr(gate, "d", None), torch.Tensor):  # learned scores: shift to the density
                logit = np.log(density / (1 - density)) if 0 < density < 1 else (9.0 if density else -9.0)
                gate.d.add_(float(logit))
    if any(gate.fitted for gate in model.policies):  # data statistics (balanced_hash): from inputs like x
        model.fit_gates(torch.from_numpy(rng.random((64, case.input_dim), dtype=np.float32)))
    return model.eval()


def check(case: Case, seed: int) -> str | None:
    """None when the engine agrees with the model on this case, else what differs."""
    rng = np.random.default_rng([seed, case.index])
    model = build(case, rng)
    engine = Engine(model, threads=case.threads)
    x = rng.random((case.batch, case.input_dim), dtype=np.float32) * rng.choice([1.0, 4.0])
    given = None
    if case.mode == "given":
        given = [
            (rng.random((case.batch, k)) < d).astype(np.uint8)
            for (k, _), d in zip(case.layers, case.densities, strict=True)
        ]
    mode = "sample" if case.mode == "given" else case.mode
    logits, masks = engine.forward(x, mode, masks=given, seed=rng)
    if given is not None and any(not np.array_equal(m, g) for m, g in zip(masks, given, strict=True)):
        return "the engine did not use the given masks"
    with torch.no_grad():
        out = model(torch.from_numpy(x), masks=[torch.from_numpy(m.astype(np.float32)) for m in masks])
    expected = out.logits.numpy()
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    error = float(np.abs(logits - expected).max(initial=0))
    if error > RTOL * scale:
        return f"logits differ by {error:.3g} (allowed {RTOL * scale:.3g})"
    if case.mode == "given":
        return None
    for index, (trace, mask) in enumerate(zip(out.layers, masks, strict=True)):
        if not case.gated[index]:
            if not mask.all():
                return f"layer {index + 1} is dense, but the engine turned blocks off"
            continue
        gate = gates.gate_name(model.cfg, index)
        if gate in ROUTER_CHECKS:
            problem = ROUTER_CHECKS[gate](case.k[index], trace, mask)
            if problem:
                return f"layer {index + 1}: {problem}"
        elif case.mode == "threshold":  # a policy's sigma, or bdNN's tau
            sigma = trace.sigma.numpy()
            clear = np.abs(sigma - 0.5) > SIGMA_TIE
            if np.any((sigma > 0.5)[clear] != mask.astype(bool)[clear]):
                return f"threshold decisions of layer {index + 1} differ from sigma > 0.5"
    return None


def _one_leaf(k, trace, mask) -> str | None:
    """A tree: one leaf per example (its choice is checked in tests/test_router.py)."""
    return None if np.all(mask.sum(axis=1) == 1) else "the tree router did not choose exactly one block"


def _top_k(k, trace, mask) -> str | None:
    """Exactly k blocks, those of the largest scores (up to float ties)."""
    if np.any(mask.sum(axis=1) != k):
        return "the engine did not compute exactly k blocks"
    sigma = trace.sigma.numpy()
    chosen = np.where(mask != 0, sigma, np.inf).min(axis=1, initial=np.inf)
    others = np.where(mask == 0, sigma, -np.inf).max(axis=1, initial=-np.inf)
    if np.any(chosen < others - SIGMA_TIE):
        return "the engine's top-k blocks are not those of the largest scores"
    return None


# What the engine's decisions must satisfy, per router (the Bernoulli policy: threshold mode below);
# a router that is not here is checked through the logits only.
ROUTER_CHECKS = {"tree": _one_leaf, "topk": _top_k, "switch": _top_k, "balanced_switch": _top_k}


@dataclass
class SweepResult:
    cases: int
    mismatches: list[str]
    counts: dict[str, Counter]  # what was covered: per dimension, how many cases of each value


def sweep(cases: int, seed: int = 0, max_threads: int = 2, on_case=None) -> SweepResult:
    import numba

    rng = np.random.default_rng(seed)
    max_threads = min(max_threads, numba.config.NUMBA_NUM_THREADS)
    counts: dict[str, Counter] = defaultdict(Counter)
    mismatches = []
    for index in range(cases):
        case = draw_case(index, rng, max_threads)
        covered = {"kind": case.kind, "mode": case.mode, "threads": case.threads,
                   "batch": str(case.batch) if case.batch < 2 else ">1", "hidden layers": len(case.layers),
                   "mixed dense and gated layers": len(set(case.gated)) > 1,
                   "router": "-" if case.kind in gates.NOT_ROUTED else case.router,
                   "router input": case.router_input.rstrip("0123456789")}  # fmt: skip
        for name, value in covered.items():
            counts[name][value] += 1
        try:
            problem = check(case, seed)
        except Exception as exc:  # a crash is a mismatch too: report it with the case, keep going
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            mismatches.append(f"{case}: {problem}")
        if on_case:
            on_case(index + 1, cases)
    return SweepResult(cases, mismatches, counts)
