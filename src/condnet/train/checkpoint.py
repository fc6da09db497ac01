"""A CondNet to and from the checkpoint format of `condnet.checkpoint` (which reads and verifies the
files with numpy only, so the engine needs no PyTorch)."""

from __future__ import annotations

from pathlib import Path

import torch

from condnet.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from condnet.nn.condnet import CondNet


def model_arrays(model: CondNet) -> Checkpoint:
    """The model's weights as float32 numpy arrays (copies), with what is needed to rebuild it."""
    tensors = {k: v.detach().to(torch.float32).cpu().numpy().copy() for k, v in model.state_dict().items()}
    return Checkpoint(model.input_dim, model.n_classes, model.cfg, tensors)


def save_checkpoint(model: CondNet, directory: str | Path) -> None:
    write_checkpoint(model_arrays(model), directory)


def load_checkpoint(directory: str | Path) -> CondNet:
    """Rebuild the model saved in `directory`; CheckpointError says what is wrong and what to do."""
    checkpoint = read_checkpoint(directory)
    model = CondNet(checkpoint.input_dim, checkpoint.n_classes, checkpoint.model)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in checkpoint.tensors.items()})
    return model.eval()
