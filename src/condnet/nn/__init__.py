"""Models: the block-gated CondNet, its policies, and the compute (MAC) model."""

from condnet.nn.condnet import CondNet, LayerTrace, Output
from condnet.nn.macs import active_macs, dense_macs
from condnet.nn.policy import BlockPolicy, UniformPolicy

__all__ = ["BlockPolicy", "CondNet", "LayerTrace", "Output", "UniformPolicy", "active_macs", "dense_macs"]
