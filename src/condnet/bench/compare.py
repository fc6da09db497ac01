"""`condnet bench`: the engine against the dense twin in PyTorch and in ONNX Runtime, on the same weights
and inputs, timed side by side (interleaved repeats).

The model is either a trained run, with the masks it really draws on test inputs, or a synthetic one:
random weights, and policies whose probability is the requested density for every block, so the engine
evaluates them (policies included) and draws masks at that rate; or a synthetic dense net (kind "nn").
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from condnet.bench.onnx_twin import ort_session
from condnet.bench.roofline import ideal_ms, int8_peak_gmacs, peak_gmacs
from condnet.config import Config, ModelConfig, validate
from condnet.engine.engine import Engine
from condnet.engine.timing import interleaved_medians, read_bandwidth_at
from condnet.nn.condnet import CondNet
from condnet.nn.macs import dense_macs, weight_bytes

CALLS_PER_SAMPLE = 64  # examples timed per sample at batch 1: averages over inputs, above timer noise


@dataclass
class BenchRecord:
    batch: int
    threads: int
    dense_ms: float  # one batch through dense PyTorch (torch.inference_mode)
    engine_ms: float  # one batch through the engine, policies included
    speedup: float  # dense_ms / engine_ms
    ideal_speedup: float  # dense MACs / (active + policy MACs) for the masks actually drawn
    efficiency: float  # speedup / ideal_speedup
    active_fraction: list[float]  # per hidden layer
    ort_ms: float  # one batch through the dense twin in ONNX Runtime
    speedup_vs_ort: float  # ort_ms / engine_ms
    efficiency_vs_ort: float  # speedup_vs_ort / ideal_speedup
    weights_mb: float  # weights the engine reads per batch for the masks drawn (nn.macs.weight_bytes)
    weights_gbps: float  # weights_mb / engine_ms: how close the engine runs to the memory's speed
    roofline_ms: float  # the least time on this machine: weights_mb over the measured bandwidth, or the
    # active multiply-adds over the measured peak, whichever is larger (bench.roofline), `threads` cores
    bound: str  # which of the two: "memory" or "compute"
    of_roofline: float  # roofline_ms / engine_ms: the fraction of the roofline reached
    footprint_gbps: float  # one core's read bandwidth at the model's footprint, measured
    peak_gmacs: float  # one core's multiply-adds per second in a tuned product, measured


def synthetic_model(
    arch: list[int], block_sizes: list[int], densities: list[float], seed: int = 0, kind: str = "condnet"
) -> CondNet:
    """Random weights; each policy gives every block probability `density` (Z = 0, d = logit(density)).
    kind "nn": a dense net (no policies, one block per layer; block sizes and densities are not used).

    The policies' range is opened to [0, 1] so that densities 0 and 1 are exact.
    """
    widths = arch[1:-1]
    model_cfg = ModelConfig(kind=kind, widths=widths, block_size=widths)  # dense: one block per layer
    if model_cfg.is_gated:
        model_cfg.block_size = block_sizes
    cfg = validate(Config(model=model_cfg))
    cfg.model.p_min, cfg.model.p_max = 0.0, 1.0
    torch.manual_seed(seed)
    model = CondNet(arch[0], arch[-1], cfg.model)
    if not cfg.model.is_gated:
        return model.eval()
    with torch.no_grad():
        for policy, density in zip(model.policies, densities, strict=True):  # every layer gated here
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


@contextmanager
def subnormals_flushed():
    """Subnormal floats read and written as zero (the CPU's FTZ and DAZ modes, torch.set_flush_denormal)
    on this thread, then off again; ONNX Runtime's sessions need their own option (ort_session's
    flush_subnormals). What a deployment does to every runtime: a gated net's dense twin holds the tiny
    weights of blocks its router never picks, and their subnormal products made ONNX Runtime 15x slower
    on one trained run (RESULTS 10.18)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def bench(
    model: CondNet,
    inputs: np.ndarray,
    batches: list[int],
    threads: list[int],
    mode: str = "sample",
    repeats: int = 15,
    seed: int = 0,
    engine: Engine | None = None,
    weights: str = "fp32",
) -> list[BenchRecord]:
    """Time dense PyTorch, dense ONNX Runtime and the engine on the same weights and inputs, for every
    (batch, threads), with subnormals flushed for all three (`subnormals_flushed`). `engine`: the model's
    engine when the caller has one; else one with `weights` (fp32; bf16 or int8: the layers' weights in
    bfloat16 or int8, counted as 2 or 1 bytes in weights_mb)."""
    with subnormals_flushed():
        return _bench(model, inputs, batches, threads, mode, repeats, seed, engine, weights)


def _bench(model, inputs, batches, threads, mode, repeats, seed, engine, weights) -> list[BenchRecord]:
    engine = engine or Engine(model, weights=weights)
    layer_bytes = {"fp32": 4, "bf16": 2, "int8": 1}[engine.weights]
    dense = dense_forward(model)
    checkpoint = model.to_checkpoint()
    full = dense_macs(model.input_dim, model.cfg.widths, model.n_classes)
    footprint = 4 * sum(p.numel() for p in model.parameters())  # fp32 weights (the batch-1 tiles' size)
    bandwidth = read_bandwidth_at(footprint)
    peak = int8_peak_gmacs() if engine.weights == "int8" else peak_gmacs()
    records = []
    for n_threads in threads:
        engine.set_threads(n_threads)
        torch.set_num_threads(n_threads)
        ort = ort_session(checkpoint, n_threads, flush_subnormals=True)
        for batch in batches:
            calls = max(1, CALLS_PER_SAMPLE // batch)
            chunks = [inputs[(c * batch) % len(inputs) :][:batch] for c in range(calls)]
            chunks = [c if len(c) == batch else np.resize(c, (batch, inputs.shape[1])) for c in chunks]
            tensors = [torch.from_numpy(c) for c in chunks]

            def run_engine(chunks=chunks):  # as a user calls it: the engine's own generator
                for c in chunks:
                    engine.forward(c, mode)

            def run_dense(tensors=tensors):
                for t in tensors:
                    dense(t)

            def run_ort(chunks=chunks, ort=ort):
                for c in chunks:
                    ort.run(None, {"x": c})

            runners = {"dense": run_dense, "ort": run_ort, "engine": run_engine}
            times = interleaved_medians(runners, repeats)
            mask_rng = np.random.default_rng(seed)  # one stream: every chunk draws its own masks
            masks = [engine.forward(c, mode, seed=mask_rng)[1] for c in chunks]
            per_layer = [np.concatenate([m[layer] for m in masks]) for layer in range(len(model.hidden))]
            rows = model.policy_rows
            macs = model.macs([torch.from_numpy(m) for m in per_layer]).mean().item()
            dense_ms, ort_ms, engine_ms = (1e3 * times[name] / calls for name in ("dense", "ort", "engine"))
            shape = model.input_dim, model.block_sizes, model.n_classes
            read = [weight_bytes(*shape, m, rows, model.router_inputs, layer_bytes, model.view_weights)
                    for m in masks]  # fmt: skip
            weights_mb = np.mean(read) / 1e6
            ideal = full / macs
            roofline_ms, bound = ideal_ms(weights_mb * 1e6, macs * batch, bandwidth, peak, n_threads)
            records.append(
                BenchRecord(
                    batch=batch,
                    threads=n_threads,
                    dense_ms=dense_ms,
                    engine_ms=engine_ms,
                    speedup=dense_ms / engine_ms,
                    ideal_speedup=ideal,
                    efficiency=dense_ms / engine_ms / ideal,
                    active_fraction=[float(m.mean()) for m in per_layer],
                    ort_ms=ort_ms,
                    speedup_vs_ort=ort_ms / engine_ms,
                    efficiency_vs_ort=ort_ms / engine_ms / ideal,
                    weights_mb=float(weights_mb),
                    weights_gbps=float(weights_mb / engine_ms),
                    roofline_ms=roofline_ms,
                    bound=bound,
                    of_roofline=roofline_ms / engine_ms,
                    footprint_gbps=bandwidth,
                    peak_gmacs=peak,
                )
            )
    return records
