"""A CondNet to and from the checkpoint files of `condnet.checkpoint` (which reads and verifies them with
numpy only, so the engine needs no PyTorch)."""

from __future__ import annotations

from pathlib import Path

from condnet.checkpoint import read_checkpoint, write_checkpoint
from condnet.nn.condnet import CondNet


def save_checkpoint(model: CondNet, directory: str | Path) -> None:
    write_checkpoint(model.to_checkpoint(), directory)


def load_checkpoint(directory: str | Path) -> CondNet:
    """Rebuild the model saved in `directory`; CheckpointError says what is wrong and what to do."""
    return CondNet.from_checkpoint(read_checkpoint(directory)).eval()
