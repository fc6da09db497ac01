"""Top-k routing (model.router = "topk"): the k blocks of largest scores Z s + d are computed, each
scaled by the softmax of the scores over the blocks on (condnet.nn.gates.topk has the equations)."""

from condnet.errors import ConfigError
from condnet.gates import GateSpec, Lowered, register


@register
class TopK(GateSpec):
    name = "topk"
    learned = True
    scales = True

    def check(self) -> None:
        k, n = self.layer.k, self.layer.n_blocks
        if not 1 <= k <= n:
            raise ConfigError(
                f"model.k[{self.layer.index}]: got {k!r}; allowed: a whole number from 1 to {n} (blocks)"
            )

    def tensors(self):
        return {"Z": (self.layer.n_blocks, self.layer.n_in), "d": (self.layer.n_blocks,)}

    @property
    def score_rows(self) -> int:
        return self.layer.n_blocks

    def lower(self, tensors) -> Lowered:
        return Lowered("topk", arg=self.layer.k, z=tensors["Z"], d=tensors["d"])
