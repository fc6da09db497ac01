"""condnet: conditional computation in neural networks, made fast on CPU.

Implements Bengio, Bacon, Pineau, Precup, "Conditional Computation in Neural Networks for faster
models" (arXiv 1511.06297): hidden layers cut into blocks, per-layer policies trained by REINFORCE that
switch blocks on and off per example.

The inference engine (`condnet.Engine`, with `read_checkpoint` and `Checkpoint`) runs without PyTorch;
it and the names that need PyTorch (the model, training, evaluation) are imported on first use, so
`import condnet` stays light.
The training loop is `condnet.train.loop.train` (`condnet.train` is the subpackage).
"""

from importlib import import_module

from condnet.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from condnet.errors import CheckpointError, CondnetError, ConfigError, DataError, TrainingError

_LAZY = {  # imported on first use: numba (the engine) and torch (the rest) take seconds to import
    "Checkpoint": "condnet.checkpoint",
    "read_checkpoint": "condnet.checkpoint",
    "Engine": "condnet.engine",
    "CondNet": "condnet.nn.condnet",
    "evaluate": "condnet.train.evaluate",
    "load_checkpoint": "condnet.nn.checkpoint",
    "save_checkpoint": "condnet.nn.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'condnet' has no attribute {name!r}")


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CondNet",
    "CondnetError",
    "Config",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Engine",
    "ModelConfig",
    "TrainConfig",
    "evaluate",
    "load_checkpoint",
    "TrainingError",
    "load_config",
    "read_checkpoint",
    "save_checkpoint",
]
