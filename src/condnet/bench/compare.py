"""`condnet bench`: the engine against dense PyTorch on the same weights and inputs, side by side.

The model is either a trained run, with the masks it really draws on test inputs, or a synthetic one:
random weights, and policies whose probability is the requested density for every block, so the engine
evaluates them (policies included) and draws masks at that rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from condnet.config import Config, ModelConfig, validate
from condnet.engine.engine import Engine
from condnet.engine.timing import interleaved_medians
from condnet.nn.condnet import CondNet
from condnet.nn.macs import active_macs, dense_macs

CALLS_PER_SAMPLE = 64  # examples timed per sample at batch 1: averages over inputs, above timer noise


@dataclass
class BenchRecord:
    batch: int
    threads: int
    dense_ms: float  # one batch through dense PyTorch (torch.inference_mode)
    engine_ms: float  # one batch through the engine, policies included
    speedup: float
    ideal_speedup: float  # dense MACs / (active + policy MACs) for the masks actually drawn
    efficiency: float  # speedup / ideal_speedup
    active_fraction: list[float]  # per hidden layer


def synthetic_model(
    arch: list[int], block_sizes: list[int], densities: list[float], seed: int = 0
) -> CondNet:
    """Random weights; each policy gives every block probability `density` (Z = 0, d = logit(density)).

    The policies' range is opened to [0, 1] so that densities 0 and 1 are exact.
    """
    widths = arch[1:-1]
    cfg = validate(Config(model=ModelConfig(widths=widths, block_size=block_sizes)))
    cfg.model.p_min, cfg.model.p_max = 0.0, 1.0
    torch.manual_seed(seed)
    model = CondNet(arch[0], arch[-1], cfg.model)
    with torch.no_grad():
        for policy, density in zip(model.policies, densities, strict=True):
            policy.p_min, policy.p_max = 0.0, 1.0
            policy.Z.zero_()
            logit = np.log(density / (1 - density)) if 0 < density < 1 else (30.0 if density >= 1 else -30.0)
            policy.d.fill_(float(logit))
    return model.eval()


def dense_forward(model: CondNet):
    """The same weights computed densely by PyTorch, no policies: the baseline."""
    layers = [(layer.weight.detach(), layer.bias.detach()) for layer in model.hidden]
    out_w, out_b = model.output.weight.detach(), model.output.bias.detach()
    act = torch.tanh if model.cfg.activation == "tanh" else torch.relu

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            h = x
            for w, b in layers:
                h = act(torch.nn.functional.linear(h, w, b))
            return torch.nn.functional.linear(h, out_w, out_b)

    return run


def bench(
    model: CondNet,
    inputs: np.ndarray,
    batches: list[int],
    threads: list[int],
    mode: str = "sample",
    repeats: int = 15,
    seed: int = 0,
    engine: Engine | None = None,
) -> list[BenchRecord]:
    """Time dense PyTorch and the engine on the same weights and inputs, for every (batch, threads).
    `engine`: the model's engine when the caller has one (it is calibrated here, per thread count)."""
    engine = engine or Engine(model)
    dense = dense_forward(model)
    full = dense_macs(model.input_dim, model.cfg.widths, model.n_classes)
    records = []
    for n_threads in threads:
        engine.set_threads(n_threads)
        engine.calibrate()  # the dense-fallback crossover depends on the thread count
        for batch in batches:
            calls = max(1, CALLS_PER_SAMPLE // batch)
            chunks = [inputs[(c * batch) % len(inputs) :][:batch] for c in range(calls)]
            chunks = [c if len(c) == batch else np.resize(c, (batch, inputs.shape[1])) for c in chunks]
            tensors = [torch.from_numpy(c) for c in chunks]
            rng = np.random.default_rng(seed)

            def run_engine(chunks=chunks, rng=rng):
                for c in chunks:
                    engine.forward(c, mode, seed=rng)

            def run_dense(tensors=tensors):
                for t in tensors:
                    dense(t)

            times = interleaved_medians({"dense": run_dense, "engine": run_engine}, repeats)
            mask_rng = np.random.default_rng(seed)  # one stream: every chunk draws its own masks
            masks = [engine.forward(c, mode, seed=mask_rng)[1] for c in chunks]
            per_layer = [np.concatenate([m[layer] for m in masks]) for layer in range(len(model.hidden))]
            with_policy = model.cfg.kind == "condnet"
            macs = (
                active_macs(
                    model.input_dim,
                    model.block_sizes,
                    model.n_classes,
                    [torch.from_numpy(m) for m in per_layer],
                    with_policy,
                )
                .mean()
                .item()
            )
            dense_ms, engine_ms = 1e3 * times["dense"] / calls, 1e3 * times["engine"] / calls
            ideal = full / macs
            records.append(
                BenchRecord(
                    batch,
                    n_threads,
                    dense_ms,
                    engine_ms,
                    dense_ms / engine_ms,
                    ideal,
                    dense_ms / engine_ms / ideal,
                    [float(m.mean()) for m in per_layer],
                )
            )
    return records
