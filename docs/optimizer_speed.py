"""Training steps of a run's config with PyTorch's fused Adam (what condnet.train.loop makes) against
its default one-op-at-a-time Adam, side by side in one process: the same model, data and steps, the two
optimizers alternated epoch by epoch on a slice of the training split (one thread). Prints ms per step.

    .venv/bin/python docs/optimizer_speed.py CONFIG.toml [EXAMPLES] [ROUNDS]   (default 5120, 3)
"""

import dataclasses
import statistics
import sys
import time

import torch

from condnet.config import load_config
from condnet.data import load_splits
from condnet.engine.timing import machine
from condnet.train.loop import TrainState, train_epoch


def main(config: str, examples: int, rounds: int) -> None:
    torch.set_num_threads(1)
    cfg = load_config(config)
    splits = load_splits(cfg.data)
    part = dataclasses.replace(splits, x_train=splits.x_train[:examples], y_train=splits.y_train[:examples],
                               x_valid=splits.x_valid[:500], y_valid=splits.y_valid[:500])  # fmt: skip
    states = {}
    for name, fused in (("fused", True), ("one op at a time", False)):
        state = TrainState.new(cfg, part)
        groups = [dict(group) for group in state.optimizer.param_groups]  # rates, decay: as make_optimizer's
        for group in groups:
            group.pop("fused"), group.pop("foreach")
        state.optimizer = type(state.optimizer)(groups, fused=fused, foreach=None if fused else False)
        states[name] = state
    steps = (examples + cfg.train.batch_size - 1) // cfg.train.batch_size
    times = {name: [] for name in states}
    for epoch in range(1, rounds + 2):  # the first round warms up
        for name, state in states.items():
            start = time.perf_counter()
            train_epoch(state, cfg, part, epoch)
            if epoch > 1:
                times[name].append((time.perf_counter() - start) / steps)
    each = f"{steps} steps of {cfg.train.batch_size} per round, {rounds} rounds, one thread"
    print(f"{machine()}; {config}; {each}")
    for name, values in times.items():
        print(f"{name}: {1e3 * statistics.median(values):.1f} ms per step (rounds: "
              f"{', '.join(f'{1e3 * v:.1f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], int(args[1]) if len(args) > 1 else 5120, int(args[2]) if len(args) > 2 else 3)
