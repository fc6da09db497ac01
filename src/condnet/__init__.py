"""condnet: conditional computation in neural networks, made fast on CPU.

Implements Bengio, Bacon, Pineau, Precup, "Conditional Computation in Neural Networks for faster
models" (arXiv 1511.06297): hidden layers cut into blocks, per-layer policies trained by REINFORCE that
switch blocks on and off per example.

The inference engine (`condnet.engine`) runs without PyTorch; the names that need it (the model,
training, evaluation) are imported on first use, so `import condnet` stays light.
The training loop is `condnet.train.loop.train` (`condnet.train` is the subpackage).
"""

from importlib import import_module

from condnet.config import Config, DataConfig, ModelConfig, TrainConfig, load_config
from condnet.errors import CheckpointError, CondnetError, ConfigError, DataError

_NEEDS_TORCH = {
    "CondNet": "condnet.nn.condnet",
    "evaluate": "condnet.train.evaluate",
    "load_checkpoint": "condnet.train.checkpoint",
    "save_checkpoint": "condnet.train.checkpoint",
}


def __getattr__(name: str):
    if name in _NEEDS_TORCH:
        return getattr(import_module(_NEEDS_TORCH[name]), name)
    raise AttributeError(f"module 'condnet' has no attribute {name!r}")


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
]
