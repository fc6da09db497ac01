"""Input jitter (train.jitter) against shifts found by brute force, a resumed run with it, the errors
for inputs that are not images, and the config text of runs that do not use it (their identity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condnet.config import load_config, to_toml
from condnet.errors import ConfigError
from condnet.train.jitter import image_shape, jitter
from test_training import small_config


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """image (channels, side, side) moved down dy and right dx, zeros in: written out by loops."""
    out = np.zeros_like(image)
    side = image.shape[1]
    for i in range(side):
        for j in range(side):
            if 0 <= i - dy < side and 0 <= j - dx < side:
                out[:, i, j] = image[:, i - dy, j - dx]
    return out


@pytest.mark.parametrize("channels, side, shift", [(1, 5, 1), (1, 6, 2), (3, 4, 1)])
def test_each_example_is_its_image_moved_by_at_most_shift(channels, side, shift):
    rng = np.random.default_rng(0)
    images = rng.random((256, channels, side, side), dtype=np.float32) + 1  # no zeros: shifts are unique
    out = jitter(
        torch.from_numpy(images.reshape(256, -1)), shift, channels, side, torch.Generator().manual_seed(1)
    )
    out = out.numpy().reshape(images.shape)
    seen = set()
    for image, moved in zip(images, out, strict=True):
        matches = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)
                   if np.array_equal(shifted(image, dy, dx), moved)]  # fmt: skip
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == (2 * shift + 1) ** 2  # every shift drawn (256 examples)


def test_no_jitter_is_not_written_in_the_config_text():
    """A run's config text names its search trial and guards its resume: a setting added later and left
    at its default must not change it."""
    plain = to_toml(load_config(None))
    assert "jitter" not in plain
    assert "jitter = 2" in to_toml(load_config(None, ["train.jitter=2"]))
    assert load_config(None, ["train.jitter=2"]).train.jitter == 2


@pytest.mark.parametrize("value, message", [(-1, "a whole number of pixels >= 0"), (1.5, "train.jitter")])
def test_bad_jitter_values_are_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"train.jitter={value}"])


def test_inputs_that_are_not_images_are_refused_before_training():
    with pytest.raises(ConfigError, match="not a square image"):
        image_shape(30, 1)
    with pytest.raises(ConfigError, match="allowed: 0 to 27 pixels"):
        image_shape(784, 28)


def test_a_jittered_run_resumed_ends_bit_identical(idx_dir, tmp_path):
    from condnet.data.splits import load_idx_splits
    from condnet.train.loop import train

    extra = ["train.jitter=2", "train.max_epochs=3", "train.patience=10"]
    cfg = small_config(idx_dir, *extra)
    splits = load_idx_splits(idx_dir, 200)
    whole = train(cfg, splits).model.state_dict()
    plain = train(small_config(idx_dir, "train.max_epochs=3", "train.patience=10"), splits).model.state_dict()
    assert not all(torch.equal(whole[k], plain[k]) for k in whole)  # the jitter changed the training
    work = tmp_path / "work"
    work.mkdir()

    def kill_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(small_config(idx_dir, *extra), splits, on_epoch=kill_after_two, workdir=work)
    resumed = train(cfg, splits, workdir=work).model.state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_jitter_with_distillation_is_refused():
    """The teacher's targets are computed once on the unshifted images: a shifted student would learn
    the wrong targets silently."""
    with pytest.raises(ConfigError, match="0 when distilling"):
        load_config(None, ["train.jitter=1", 'train.teacher="runs/t"', "train.distill_weight=0.5"])
