"""Engine(weights="bf16") against the PyTorch model whose layer weights PyTorch itself rounded to
bfloat16 (the scores' weights and biases kept float32): the same answer to float32 rounding, on both
paths (batch 1 and batches) and both vector widths; and the fp32 engine unchanged."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from condnet.engine import Engine, native
from test_engine import assert_matches, make_model


def rounded(model):
    """The model with every layer's weight matrix rounded to bfloat16 by PyTorch."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for layer in [*model.hidden, model.output]:
            layer.weight.copy_(layer.weight.to(torch.bfloat16).float())
    return model


@pytest.mark.parametrize("width", [8, 16])
@pytest.mark.parametrize("batch", [1, 2, 7, 50])
def test_bf16_matches_the_model_with_rounded_weights(batch, width):
    default = native.vector_width()
    if native.vector_width(width) != width:
        pytest.skip("this CPU has no AVX-512")
    try:
        model = make_model(51, [(5, 16), (3, 10), (2, 33)], 7)  # odd tiles: 33 x 10, 7 x 33
        rng = np.random.default_rng(batch)
        x = rng.random((batch, 51), dtype=np.float32)
        masks = [(rng.random((batch, k)) < 0.6).astype(np.float32) for k in (5, 3, 2)]
        engine = Engine(model, weights="bf16")
        logits, _ = engine.forward(x, masks=masks)
        threshold_logits, threshold_masks = engine.forward(x, "threshold")
    finally:
        native.vector_width(default)
    reference = rounded(model)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), masks=[torch.from_numpy(m) for m in masks]).logits
        out = reference(torch.from_numpy(x), mode="threshold")
    assert_matches(logits, expected)
    for mask, layer in zip(threshold_masks, out.layers, strict=True):
        np.testing.assert_array_equal(mask, layer.mask.numpy())
    assert_matches(threshold_logits, out.logits)

    # and the rounding is real: with every block on, the unrounded model differs by more than float32 noise
    every_block = [np.ones_like(m) for m in masks]
    with torch.no_grad():
        exact = model(torch.from_numpy(x), masks=[torch.from_numpy(m) for m in every_block]).logits.numpy()
    assert np.abs(exact - Engine(model, weights="bf16").forward(x, masks=every_block)[0]).max() > 1e-4


def test_weights_must_be_named():
    model = make_model(8, [(2, 4)], 3)
    with pytest.raises(ValueError, match="weights must be one of fp32, bf16, int8"):
        Engine(model, weights="int4")
