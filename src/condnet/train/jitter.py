"""Input jitter (train.jitter): each training image shifted by a random whole number of pixels, up to
`shift` in each direction, zeros coming in at the border; the augmentation that strong MLP teachers on
MNIST are trained with (issue 19)."""

from __future__ import annotations

import torch

from condnet.errors import ConfigError
from condnet.gates import square_image


def image_shape(input_dim: int, shift: int) -> tuple[int, int]:
    """(channels, side) of the flat images that train.jitter = shift shifts, or a ConfigError."""
    image = square_image(input_dim)
    if image is None:
        raise ConfigError(f"train.jitter: got {shift}; it shifts images, and {input_dim} inputs are not a "
                          f"square image of 1 or 3 channels: set it to 0")  # fmt: skip
    if shift >= image[1]:
        raise ConfigError(f"train.jitter: got {shift}; allowed: 0 to {image[1] - 1} pixels for {image[1]} x "
                          f"{image[1]} images")  # fmt: skip
    return image


def jitter(x: torch.Tensor, shift: int, channels: int, side: int, generator: torch.Generator) -> torch.Tensor:
    """x (batch, channels * side * side) with each example's image moved by (dy, dx), both drawn
    uniformly from -shift..shift: out[c, i, j] = image[c, i - dy, j - dx], 0 outside the image."""
    batch = x.shape[0]
    padded = torch.nn.functional.pad(x.reshape(batch, channels, side, side), (shift,) * 4)
    dy, dx = torch.randint(-shift, shift + 1, (2, batch, 1), generator=generator)
    rows = torch.arange(side) + shift - dy  # (batch, side): the padded row each output row reads
    cols = torch.arange(side) + shift - dx
    out = padded[torch.arange(batch)[:, None, None, None], torch.arange(channels)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]  # fmt: skip
    return out.reshape(batch, -1)
