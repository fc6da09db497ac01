"""Top-k routing (model.router = "topk"): the k blocks of largest scores Z s + d are computed, each
scaled by the softmax of the scores over the blocks on (condnet.nn.gates.topk has the equations)."""

from condnet.gates import BlockScores, Lowered, check_k, register


@register
class TopK(BlockScores):
    name = "topk"
    learned = True
    scales = True
    sigma_means = "router softmax over all blocks"

    def check(self) -> None:
        check_k(self.layer)

    def lower(self, tensors) -> Lowered:
        return Lowered("topk", arg=self.layer.k, z=tensors["Z"], d=tensors["d"])
