"""Tree routing (model.router = "tree"): a binary tree of decision units over the 2^D blocks; each
example follows one path and computes the block at its end, scaled by the path's probability
(condnet.nn.gates.tree has the equations). Z: (n_blocks - 1, n_in), nodes in level order."""

from condnet.errors import ConfigError
from condnet.gates import GateSpec, Lowered, register


@register
class Tree(GateSpec):
    name = "tree"
    learned = True
    scales = True
    sigma_means = "leaf (path) probability"

    @property
    def depth(self) -> int:
        return self.layer.n_blocks.bit_length() - 1

    def check(self) -> None:
        n = self.layer.n_blocks
        if n & (n - 1):
            size, width = self.layer.block_size, n * self.layer.block_size
            raise ConfigError(
                f"model.block_size[{self.layer.index}]: got {size!r}; allowed: a tree router needs a "
                f"power of 2 of blocks; {width} / {size} = {n}"
            )

    def tensors(self):
        return {"Z": (self.layer.n_blocks - 1, self.layer.n_in), "d": (self.layer.n_blocks - 1,)}

    @property
    def score_rows(self) -> int:
        return self.depth  # only the nodes on the example's path are computed

    def lower(self, tensors) -> Lowered:
        if self.layer.n_blocks == 1:  # a one-leaf tree: that block, with probability 1
            return Lowered("dense")
        return Lowered("tree", arg=self.depth, z=tensors["Z"], d=tensors["d"])
