"""condnet: conditional computation in neural networks, made fast on CPU.

Implements Bengio, Bacon, Pineau, Precup, "Conditional Computation in Neural Networks for faster
models" (arXiv 1511.06297): hidden layers cut into blocks, per-layer policies trained by REINFORCE that
switch blocks on and off per example.
"""

from condnet.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from condnet.errors import CheckpointError, CondnetError, ConfigError, DataError
from condnet.nn import CondNet
from condnet.train.checkpoint import load_checkpoint, save_checkpoint
from condnet.train.evaluate import evaluate
from condnet.train.loop import train

__all__ = [
    "CheckpointError",
    "CondNet",
    "CondnetError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "ModelConfig",
    "TrainConfig",
    "evaluate",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "train",
]
