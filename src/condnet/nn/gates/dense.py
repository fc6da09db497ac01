"""A dense layer's place among the gates: every block on (no parameters)."""

from __future__ import annotations

from condnet.nn.gates import Gate, LayerTrace, register


@register
class Dense(Gate):
    name = "dense"

    def decide(self, s, how, given):
        if given is None:
            return LayerTrace(None, None)  # CondNet computes the whole layer (with dropout)
        return LayerTrace(None, given)
