"""bdNN's gate (model.kind = "bdnn"): every block on with probability tau, whatever the input; nothing
is learned. (The model and the engine still turn a block on iff tau > 0.5 in threshold mode, as for a
policy's sigma; the commands refuse that mode for it.)"""

from condnet.gates import GateSpec, Lowered, register


@register
class Uniform(GateSpec):
    name = "uniform"
    sigma_means = "rate (the same for every example)"
    router = False
    draws = True
    thresholds = False  # a rate that reads no input: thresholding it would turn every block on or off

    def lower(self, tensors) -> Lowered:
        return Lowered("uniform", rate=self.layer.tau)
