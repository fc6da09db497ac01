"""Switch routing (model.router = "switch"): top-k's k blocks of largest scores Z s + d, each scaled by
its softmax probability over every block (condnet.nn.gates.switch has the equations: unlike top-k's
values, they carry the task's gradient to the router when k = 1).

Balanced switch (model.router = "balanced_switch"): the switch router whose training batches are shared
out evenly among the blocks (condnet.nn.gates.switch); at inference it is the switch router."""

from condnet.gates import Lowered, register
from condnet.gates.topk import TopK


@register
class Switch(TopK):
    name = "switch"

    def lower(self, tensors) -> Lowered:
        return Lowered("switch", arg=self.layer.k, z=tensors["Z"], d=tensors["d"])


@register
class BalancedSwitch(Switch):
    name = "balanced_switch"
