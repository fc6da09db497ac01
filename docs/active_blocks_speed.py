"""One gated layer's forward and backward at batch 128, one thread: the masked dense product against the
block-by-block loop (condnet.nn.active_blocks), side by side in one process (interleaved, medians), over
layer shapes and k blocks on per example; and what the rule `pays` chooses for each.

    .venv/bin/python docs/active_blocks_speed.py [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from condnet.nn import active_blocks

BATCH = 128
CASES = [  # (inputs, units, block units, k): input layers of the issue 19 spaces, then narrow and deep ones
    *[(784, width, size, k) for width in (1024, 2048, 4096) for size in (16, 32, 64) for k in (1, 2, 4)],
    (784, 256, 32, 1), (784, 512, 32, 2), (784, 256, 64, 1), (64, 1024, 32, 1), (64, 1024, 64, 1),
    (32, 512, 32, 1),
]  # fmt: skip


def case(n_in: int, width: int, size: int, k: int, repeats: int) -> tuple[float, float, bool]:
    """(masked dense ms, loop ms, whether `pays` takes the loop) for one layer shape."""
    x, layer = torch.rand(BATCH, n_in), torch.nn.Linear(n_in, width)
    mask = torch.zeros(BATCH, width // size)
    mask.scatter_(1, torch.rand(mask.shape).topk(k, dim=1).indices, 1.0)
    spread = mask.repeat_interleave(size, dim=1)

    def dense():
        (torch.relu(layer(x)) * spread).sum().backward()

    def loop():
        active_blocks.active_blocks(x, layer, torch.relu, mask, mask, size).sum().backward()

    times = {dense: [], loop: []}
    for _ in range(repeats):
        for fn in times:
            layer.zero_grad()
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    d, b = (1e3 * statistics.median(times[fn]) for fn in (dense, loop))
    return d, b, active_blocks.pays(mask, n_in, size)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| inputs | units | block | k | masked dense (ms) | loop (ms) | loop / dense | pays |")
    print("|---|---|---|---|---|---|---|---|")
    for n_in, width, size, k in CASES:
        d, b, pays = case(n_in, width, size, k, repeats)
        chosen = "loop" if pays else "dense"
        print(f"| {n_in} | {width} | {size} | {k} | {d:.2f} | {b:.2f} | {b / d:.2f} | {chosen} |", flush=True)


if __name__ == "__main__":
    main()
