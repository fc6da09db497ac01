"""Hash routing: k blocks per example chosen by fixed random hyperplanes (condnet.gates.hash has the rule).
No parameters; the planes are a buffer, so they are saved with the model."""

from __future__ import annotations

import torch

from condnet.nn.gates import Gate, LayerTrace, register


@register
class Hash(Gate):
    name = "hash"

    def __init__(self, spec):
        super().__init__(spec)
        self.k, self.bits = spec.layer.k, spec.bits
        self.register_buffer("planes", torch.randn(self.k * self.bits, spec.layer.n_in))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Plane scores: (batch, k * bits)."""
        return s @ self.planes.T

    def decide(self, s, how, given):
        mask = hash_mask(self(s), self.k, self.spec.layer.n_blocks) if given is None else given
        return LayerTrace(mask, mask)  # sigma: the decision is certain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}, {self.bits} planes per table"


@register
class BalancedHash(Hash):
    """Hash routing with each plane's offset at the median of its score on the training data (fitted
    once, a buffer saved with the model; condnet.gates.hash.BalancedHash)."""

    name = "balanced_hash"
    fitted = True

    def __init__(self, spec):
        super().__init__(spec)
        self.register_buffer("offsets", torch.zeros(self.k * self.bits))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s @ self.planes.T - self.offsets

    def decide(self, s, how, given):
        # the midpoint of the two middle scores: no fitting example sits on it (one block: no planes)
        if how.fit and len(self.offsets):
            self.offsets.copy_(torch.quantile(s @ self.planes.T, 0.5, dim=0, interpolation="midpoint"))
        return super().decide(s, how, given)


def hash_mask(scores: torch.Tensor, k: int, n_blocks: int) -> torch.Tensor:
    """(batch, k * bits) plane scores -> (batch, n_blocks) 0/1: table t's block from the signs of its
    bits planes (bit i from plane t * bits + i), modulo n_blocks, moved on to the next free block when
    an earlier table took it."""
    batch = scores.shape[0]
    bits = scores.shape[1] // k
    powers = 2 ** torch.arange(bits)
    index = ((scores.detach().reshape(batch, k, bits) > 0).long() * powers).sum(dim=2) % n_blocks
    mask = torch.zeros(batch, n_blocks, dtype=scores.dtype)
    rows = torch.arange(batch)
    for table in range(k):
        block = index[:, table]
        taken = mask[rows, block] > 0
        while taken.any():  # at most `table` steps
            block = torch.where(taken, (block + 1) % n_blocks, block)
            taken = mask[rows, block] > 0
        mask[rows, block] = 1.0
    return mask
