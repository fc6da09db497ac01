"""Hash routing (model.router = "hash"): fixed random hyperplanes (SimHash) send each example to k blocks,
nothing learned: the control that a learned router must beat to claim that learning the routing helps
(as hash layers do for mixtures of experts, and SLIDE's hashing does for neuron selection).

Table t (of k) reads b = ceil(log2 n_blocks) planes: its block is the number whose bit i is [plane
t*b + i . s > 0], modulo n_blocks; a block already taken by an earlier table moves to the next free one
(linear probing), so every example computes exactly k blocks, unscaled. The planes (k*b, n_in) are drawn
from N(0, 1) with the model's seed and stored in the checkpoint (`planes`); sample and threshold modes
decide alike.
"""

import numpy as np

from condnet.gates import GateSpec, Lowered, check_k, register


@register
class Hash(GateSpec):
    name = "hash"
    sigma_means = "on (the hash's choice, 0 or 1)"

    @property
    def bits(self) -> int:
        return (self.layer.n_blocks - 1).bit_length()  # ceil(log2 n_blocks)

    def check(self) -> None:
        check_k(self.layer)

    def tensors(self):
        return {"planes": (self.layer.k * self.bits, self.layer.n_in)}

    @property
    def score_rows(self) -> int:
        return self.layer.k * self.bits

    def lower(self, tensors) -> Lowered:
        if self.bits == 0:  # one block: always that one
            return Lowered("dense")
        planes = tensors["planes"]
        return Lowered("hash", arg=self.layer.k, z=planes, d=np.zeros(len(planes), np.float32))


@register
class BalancedHash(Hash):
    """Hash routing whose planes split the training data in half (model.router = "balanced_hash"): each
    plane's bit is [plane . s > offset], the offset the median of plane . s over up to 10,000 training
    examples, fitted once before training (condnet.nn.CondNet.fit_gates), never learned. Planes through
    the origin split non-negative inputs (pixels, pooled pixels) unevenly, so one block takes most of the
    examples; this is the fair control."""

    name = "balanced_hash"

    def tensors(self):
        return super().tensors() | {"offsets": (self.layer.k * self.bits,)}

    def lower(self, tensors) -> Lowered:
        if self.bits == 0:
            return Lowered("dense")
        return Lowered("hash", arg=self.layer.k, z=tensors["planes"], d=-tensors["offsets"])
