"""Models: the block-gated CondNet, its gates (policies, routers), and the compute (MAC) model."""

from condnet.nn.condnet import CondNet, Output
from condnet.nn.gates import Gate, LayerTrace
from condnet.nn.macs import active_macs, dense_macs

__all__ = ["CondNet", "Gate", "LayerTrace", "Output", "active_macs", "dense_macs"]
