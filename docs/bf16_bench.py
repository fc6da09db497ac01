"""bfloat16 (or, with --weights int8, int8) weights on trained MNIST runs (docs/RESULTS.md, the engine at
the memory limit): for each run, the test error of the engine in threshold mode with float32 and with
the reduced weights, the fraction of gate decisions (example x block, every gated layer) that the
reduced weights flip, for a dense run the test error of its twin in ONNX Runtime int8 (its dynamic
quantization; a gated run's dense twin is not the model), and one batch's time, side by side in one
process (interleaved medians, one thread): the engine fp32 and reduced, the dense twin in ONNX Runtime
fp32 and int8; every runtime with subnormals flushed, as `condnet bench` times them (since RESULTS 10.19).
A synthetic model (random weights, policies at a fixed density, random inputs: speed only) is given as
ARCH:BLOCK_SIZE:DENSITY, for instance 3072,640,640,10:64:0.18, or a dense one as ARCH:dense.
Run on an otherwise idle machine.
Usage: python docs/bf16_bench.py [--weights bf16|int8] RUN_DIR|ARCH:BLOCK:DENSITY ..."""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `condnet bench`: idle pools must not spin

import numpy as np  # noqa: E402

from condnet.bench.compare import subnormals_flushed, synthetic_model  # noqa: E402
from condnet.bench.onnx_twin import ort_session  # noqa: E402
from condnet.engine import Engine  # noqa: E402
from condnet.engine.timing import interleaved_medians, machine  # noqa: E402
from condnet.experiment import load_run  # noqa: E402

CALLS = 64  # examples per timed sample at batch 1


def decisions(engine, x):
    """Threshold-mode logits and masks over x, in batches of 500."""
    logits, masks = [], []
    for start in range(0, len(x), 500):
        out, drawn = engine.forward(x[start : start + 500], "threshold")
        logits.append(out)
        masks.append(np.concatenate(drawn, axis=1) if drawn else np.zeros((len(out), 0), np.uint8))
    return np.concatenate(logits), np.concatenate(masks)


def timed(calls: dict, x, batch: int) -> dict:
    """ms per batch of each call over the same chunks of x, interleaved."""
    chunks = [np.ascontiguousarray(x[c * batch : (c + 1) * batch]) for c in range(max(1, CALLS // batch))]
    runners = {name: (lambda call=call: [call(chunk) for chunk in chunks]) for name, call in calls.items()}
    return {name: 1e3 * t / len(chunks) for name, t in interleaved_medians(runners, 15).items()}


def measure(label: str, model, x, y, reduced: str) -> None:
    """One table row per batch size; y None: a synthetic model (no accuracy; masks sampled at its rate)."""
    fp32, lean = Engine(model), Engine(model, weights=reduced)
    errors, flipped, int8_error, mode = ["n/a", "n/a"], "n/a", "n/a", "sample"
    checkpoint = model.to_checkpoint()
    ort32 = ort_session(checkpoint, flush_subnormals=True)
    ort8 = ort_session(checkpoint, int8=True, flush_subnormals=True)
    if y is not None:
        (logits32, masks32), (logits16, masks16) = decisions(fp32, x), decisions(lean, x)
        errors = [f"{100 * (logits.argmax(1) != y).mean():.2f}" for logits in (logits32, logits16)]
        flipped = f"{(masks32 != masks16).mean():.5f}" if masks32.size else "n/a (dense)"
        if not model.cfg.is_gated:
            logits8 = np.concatenate(
                [ort8.run(None, {"x": x[s : s + 500]})[0] for s in range(0, len(x), 500)]
            )
            int8_error = f"{100 * (logits8.argmax(1) != y).mean():.2f}"
        mode = "threshold"
    calls = {
        "fp32": lambda c: fp32.forward(c, mode),
        "reduced": lambda c: lean.forward(c, mode),
        "ort32": lambda c: ort32.run(None, {"x": c}),
        "ort8": lambda c: ort8.run(None, {"x": c}),
    }
    for batch in (1, 50):
        ms = timed(calls, x, batch)
        times = " | ".join(f"{ms[name]:.4f}" for name in ("fp32", "reduced", "ort32", "ort8"))
        ratios = " | ".join(f"{ms['reduced'] / ms[name]:.2f}" for name in ("fp32", "ort32", "ort8"))
        accuracy = f"{errors[0]} | {errors[1]} | {flipped} | {int8_error}"
        print(f"| {label} | {accuracy} | {batch} | {times} | {ratios} |")


args = sys.argv[1:]
reduced = "bf16"
if args[:1] == ["--weights"]:
    reduced, args = args[1], args[2:]
print(f"Machine: {machine()}\n")
print(
    f"| run | test error fp32 % | {reduced} % | decisions flipped | ORT int8 % | batch | engine fp32 ms | "
    f"engine {reduced} ms | ORT fp32 ms | ORT int8 ms | {reduced} / fp32 | {reduced} / ORT fp32 | "
    f"{reduced} / ORT int8 |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
with subnormals_flushed():
    for spec in args:
        if ":" in spec:  # synthetic: speed only
            arch, *gating = spec.split(":")
            arch = [int(a) for a in arch.split(",")]
            if gating == ["dense"]:
                model = synthetic_model(arch, [], [], kind="nn")
            else:
                hidden = len(arch) - 2
                model = synthetic_model(arch, [int(gating[0])] * hidden, [float(gating[1])] * hidden)
            x = np.random.default_rng(0).random((1024, arch[0]), dtype=np.float32)
            measure(spec, model, x, None, reduced)
        else:
            _, model, splits = load_run(spec)
            measure(spec, model, splits.x_test.numpy(), splits.y_test.numpy(), reduced)
