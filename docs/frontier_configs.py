"""Choose the MNIST frontier's configs from the searches, on validation only, and write them to
configs/frontier/mnist/ (fully resolved TOML; `condnet frontier mnist --configs configs/frontier/mnist`
trains them on fresh seeds), with configs/frontier/mnist_best.toml (the best gated config) and
configs/frontier/mnist_dense_rival.toml (the dense config `make run` sets against it).

Rules, all on the searches' validation errors and search-time latencies (seed 0):
- gated: each gated space's Pareto set (validation error, batch-1 latency), at most PER_SPACE points,
  the lowest error first;
- dense: every other point of the dense Pareto set up to the first one slower than every gated pick,
  and each gated pick's rival (the dense trial with the lowest validation error at most as slow);
- every estimator x router combination on one architecture (COMBOS), for the issue's table;
- the best gated config: the gated pick with the smallest gap to the dense front, gap = its validation
  error minus the lowest validation error of a dense trial at most as slow; its dense rival is that
  dense trial. Both are also trained with distillation (DISTILL), from configs/frontier/mnist_teacher.toml.

The trials and their configs come from the searches' journals alone (docs/search/mnist_<space>.journal.log,
committed; condnet.search.choose), not from their run directories: those stayed on the machine that
trained them.

    .venv/bin/python docs/frontier_configs.py [JOURNAL_DIR]     (default: docs/search)
"""

from __future__ import annotations

import sys
from pathlib import Path

from condnet.config import load_config, to_toml
from condnet.search.choose import Trial, complete_trials, gap, pareto, rival_of

ROOT = Path(__file__).resolve().parent.parent
JOURNALS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "search"
OUT = ROOT / "configs" / "frontier"
PER_SPACE = 1
DENSE_STEP = 4
# one architecture for every estimator x router: a dense 64-unit trunk routing 16 blocks of 64 units,
# one block per example on average (tau = k / blocks = 1/16); the searches' epochs and patience
COMBO_BASE = ["model.widths=[64, 1024]", "model.block_size=[64, 64]", "model.gated=[false, true]",
              "model.activation=relu", "model.tau=0.0625", "train.lr_policy=0.001",
              "train.max_epochs=30", "train.patience=8"]  # fmt: skip
DISTILL = [
    'train.teacher="runs/teacher/mnist_800x2"',
    "train.distill_weight=0.5",
    "train.distill_temperature=4",
]
COMBOS = {
    "combo_bernoulli_reinforce": ["train.estimator=reinforce"],
    "combo_bernoulli_straight_through": ["train.estimator=straight_through"],
    "combo_bernoulli_gumbel": ["train.estimator=gumbel"],
    "combo_topk": ["model.router=topk", "model.k=1"],
    "combo_tree": ["model.router=tree"],
}


def trials(space: str) -> list[Trial]:
    return complete_trials(JOURNALS / f"mnist_{space}.journal.log", f"mnist-{space}", space)


def write(trial: Trial, comment: str, path: Path, overrides: list[str] = ()) -> None:
    """The trial's resolved config, with a comment saying why it was chosen."""
    path.write_text(f"# {comment}\n" + to_toml(trial.resolved(overrides)))


def main() -> None:
    dense = trials("dense")
    dense_front = pareto(dense)
    gated_picks = []
    for space in ("topk", "tree"):
        gated_picks += sorted(pareto(trials(space)), key=lambda t: t.valid_error)[:PER_SPACE]
    # the dense configs: every DENSE_STEP-th point of the dense Pareto set up to the first point slower
    # than every gated pick (the front for the figure), and each gated pick's rival (the dense trial
    # with the lowest validation error among those at most as slow: what its verdict hinges on)
    slowest = max(t.b1_latency_us for t in gated_picks)
    reach = next((i for i, t in enumerate(dense_front) if t.b1_latency_us > slowest), len(dense_front) - 1)
    front = dense_front[: reach + 1 : DENSE_STEP] + [dense_front[reach]]
    rivals = [rival for t in gated_picks if (rival := rival_of(t, dense))]
    dense_picks = sorted({t.number: t for t in [*front, *rivals]}.values(), key=lambda t: t.b1_latency_us)
    target = OUT / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.toml"):
        old.unlink()
    for t in gated_picks + dense_picks:
        comment = f"{t.name} of the search, valid error {t.valid_error:.4f}, {t.b1_latency_us:.1f} us"
        write(t, f"chosen by docs/frontier_configs.py: {comment}", target / f"{t.name}.toml")
    for name, sets in COMBOS.items():
        cfg = load_config(ROOT / "configs" / "mnist_condnet.toml", [*COMBO_BASE, *sets])
        (target / f"{name}.toml").write_text(f"# {name}: docs/frontier_configs.py COMBOS\n" + to_toml(cfg))

    best = min(gated_picks, key=lambda t: gap(t, dense))
    rival = rival_of(best, dense)
    chosen = "chosen by docs/frontier_configs.py"
    difference = gap(best, dense)
    write(best, f"{chosen}: the best gated config ({best.name}), {difference:+.4f} from the dense front",
          OUT / "mnist_best.toml")  # fmt: skip
    write(rival, f"{chosen}: the dense rival of mnist_best.toml (trial {rival.number})",
          OUT / "mnist_dense_rival.toml")  # fmt: skip
    # distillation for both sides alike: the best gated config and its dense rival, taught by the
    # teacher of configs/frontier/mnist_teacher.toml (train it first: see that file)
    for t in (best, rival):
        comment = f"{t.name} with distillation: docs/frontier_configs.py DISTILL"
        write(t, comment, target / f"{t.name}_distilled.toml", DISTILL)
    print(
        f"{len(gated_picks)} gated, {len(dense_picks)} dense, {len(COMBOS)} combinations; best gated "
        f"{best.name} ({best.valid_error:.4f} at {best.b1_latency_us:.1f} us), dense rival trial "
        f"{rival.number} ({rival.valid_error:.4f} at {rival.b1_latency_us:.1f} us)"
    )


if __name__ == "__main__":
    main()
