"""A dense layer: every block is on, whatever the input (model.kind = "nn", or model.gated false)."""

from condnet.gates import GateSpec, Lowered, register


@register
class Dense(GateSpec):
    name = "dense"
    router = False

    def lower(self, tensors) -> Lowered:
        return Lowered("dense")
