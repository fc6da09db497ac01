"""bdNN's gate: every block on with probability tau, whatever the input (nothing is learned)."""

from __future__ import annotations

import torch

from condnet.nn.gates import Gate, LayerTrace, hard_draw, register


@register
class Uniform(Gate):
    name = "uniform"

    def decide(self, s, how, given):
        sigma = s.new_full((s.shape[0], self.spec.layer.n_blocks), self.spec.layer.tau)
        if given is not None:
            return LayerTrace(sigma, given)
        if how.mode == "threshold":
            return LayerTrace(sigma, (sigma > 0.5).to(s.dtype))
        noise = torch.rand(sigma.shape, generator=how.generator, dtype=sigma.dtype, device=sigma.device)
        return LayerTrace(sigma, hard_draw(sigma, noise, how.temperature))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.spec.layer.tau}"
