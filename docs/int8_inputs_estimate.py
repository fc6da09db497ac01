"""Would int8 with 8-bit layer inputs (what ONNX Runtime's int8 multiplies: `vpdpbusd`, 64 multiply-adds
per instruction, against the 32 of 16-bit inputs) cost accuracy? A numpy estimate, not the engine: each
layer's rows of W rounded to int8 with one scale per row (the engine's `weights="int8"`), each example's
input to the layer rounded to integers of at most a bound (the engine's until RESULTS 10.19: 13-15 bits;
the question's: 127, the engine's since), exact integer sums, scaled. A gated run's masks are the float32
engine's threshold decisions, held fixed (so no decision flips; and a router's gate values, which scale
its blocks, are not applied: compare the three columns with each other, not with the run's own test
error).

    .venv/bin/python docs/int8_inputs_estimate.py RUN_DIR ...
"""

import sys

import numpy as np

from condnet.engine import Engine
from condnet.experiment import load_run


def forward(model, x, masks, bound):
    """Test logits of the scheme; bound(n_in) -> the largest |integer| of a layer's input (None: float)."""
    h = x.astype(np.float32)
    layers = [*model.hidden, model.output]
    for index, layer in enumerate(layers):
        w = layer.weight.detach().numpy().astype(np.float32)
        bias = layer.bias.detach().numpy().astype(np.float64)
        if bound is None:
            out = h.astype(np.float64) @ w.T.astype(np.float64) + bias
        else:
            largest_w = np.abs(w).max(axis=1)
            row_scale = np.where(largest_w > 0, largest_w / 127, 1).astype(np.float32)
            q = np.rint(w / row_scale[:, None]).astype(np.int64)
            limit = np.float32(bound(w.shape[1]))
            largest = np.abs(h).max(axis=1, keepdims=True)
            inverse = np.where(largest > 0, limit / np.where(largest > 0, largest, 1), 0).astype(np.float32)
            hq = np.rint(h * inverse).astype(np.int64)
            out = (hq @ q.T) * (largest.astype(np.float64) / limit) * row_scale + bias
        if index < len(layers) - 1:
            out = np.tanh(out) if model.cfg.activation == "tanh" else np.maximum(out, 0)
            if masks is not None:
                out = out * np.repeat(masks[index], out.shape[1] // masks[index].shape[1], axis=1)
        h = out.astype(np.float32)
    return h


print("| run | float32 % | int8, 13-15-bit inputs % | int8, 8-bit inputs % |")
print("|---|---|---|---|")
for run in sys.argv[1:]:
    _, model, splits = load_run(run)
    x, y = splits.x_test.numpy(), splits.y_test.numpy()
    masks = None
    if model.cfg.is_gated:
        masks = [m.astype(np.float32) for m in Engine(model).forward(x, "threshold")[1]]
    sixteen_bits = lambda n: min(32767, (2**31 - 1) // (127 * n))  # noqa: E731  (the scheme before 10.19)
    errors = [100 * (forward(model, x, masks, bound).argmax(1) != y).mean()
              for bound in (None, sixteen_bits, lambda n: 127)]  # fmt: skip
    print(f"| {run} | " + " | ".join(f"{e:.2f}" for e in errors) + " |")
