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

    .venv/bin/python docs/frontier_configs.py [SEARCH_DIR]     (default: runs/search)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from condnet.config import load_config, to_toml

ROOT = Path(__file__).resolve().parent.parent
SEARCH = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "search"
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


def trials(space: str) -> list[dict]:
    with open(SEARCH / f"mnist_{space}" / "search.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "COMPLETE"]
    for r in rows:
        r["valid_error"], r["b1_latency_us"] = float(r["valid_error"]), float(r["b1_latency_us"])
    return rows


def pareto(rows: list[dict]) -> list[dict]:
    """Trials no other trial beats on both objectives, fastest first."""
    front, best = [], float("inf")
    for r in sorted(rows, key=lambda r: (r["b1_latency_us"], r["valid_error"])):
        if r["valid_error"] < best:
            front.append(r)
            best = r["valid_error"]
    return front


def rival_of(trial: dict, dense: list[dict]) -> dict | None:
    """The dense trial with the lowest validation error among those at most as slow as `trial`."""
    rivals = [d for d in dense if d["b1_latency_us"] <= trial["b1_latency_us"]]
    return min(rivals, key=lambda d: d["valid_error"], default=None)


def write(trial: dict, comment: str, path: Path) -> None:
    """The trial's resolved config (its run's config.toml), with a comment saying why it was chosen."""
    cfg = load_config(ROOT / trial["run_dir"] / "config.toml")
    path.write_text(f"# chosen by docs/frontier_configs.py: {comment}\n" + to_toml(cfg))


def main() -> None:
    dense = trials("dense")
    dense_front = pareto(dense)
    gated_picks = []
    for space in ("topk", "tree"):
        front = sorted(pareto(trials(space)), key=lambda r: r["valid_error"])[:PER_SPACE]
        gated_picks += [(f"{space}_trial{r['trial']}", r) for r in front]
    # the dense configs: every DENSE_STEP-th point of the dense Pareto set up to the first point slower
    # than every gated pick (the front for the figure), and each gated pick's rival (the dense trial
    # with the lowest validation error among those at most as slow: what its verdict hinges on)
    slowest = max(r["b1_latency_us"] for _, r in gated_picks)
    reach = next((i for i, r in enumerate(dense_front) if r["b1_latency_us"] > slowest), len(dense_front) - 1)
    front = dense_front[: reach + 1 : DENSE_STEP] + [dense_front[reach]]
    rivals = [rival_of(r, dense) for _, r in gated_picks]
    chosen = {r["trial"]: r for r in [*front, *[r for r in rivals if r]]}
    dense_picks = [
        (f"dense_trial{t}", r) for t, r in sorted(chosen.items(), key=lambda i: i[1]["b1_latency_us"])
    ]
    target = OUT / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.toml"):
        old.unlink()
    for name, r in gated_picks + dense_picks:
        write(r, f"{name} of the search, valid error {r['valid_error']:.4f}, "
                 f"{r['b1_latency_us']:.1f} us", target / f"{name}.toml")  # fmt: skip
    for name, sets in COMBOS.items():
        cfg = load_config(ROOT / "configs" / "mnist_condnet.toml", [*COMBO_BASE, *sets])
        (target / f"{name}.toml").write_text(f"# {name}: docs/frontier_configs.py COMBOS\n" + to_toml(cfg))

    def gap(r: dict) -> float:
        rival = rival_of(r, dense)
        return r["valid_error"] - (rival["valid_error"] if rival else 1.0)

    name, best = min(gated_picks, key=lambda pick: gap(pick[1]))
    difference, rival = gap(best), rival_of(best, dense)
    write(
        best,
        f"the best gated config ({name}), {difference:+.4f} from the dense front",
        OUT / "mnist_best.toml",
    )
    write(
        rival, f"the dense rival of mnist_best.toml (trial {rival['trial']})", OUT / "mnist_dense_rival.toml"
    )
    # distillation for both sides alike: the best gated config and its dense rival, taught by the
    # teacher of configs/frontier/mnist_teacher.toml (train it first: see that file)
    for trial, stem in ((best, name), (rival, f"dense_trial{rival['trial']}")):
        cfg = load_config(ROOT / trial["run_dir"] / "config.toml", DISTILL)
        (target / f"{stem}_distilled.toml").write_text(
            f"# {stem} with distillation: docs/frontier_configs.py DISTILL\n" + to_toml(cfg)
        )
    print(
        f"{len(gated_picks)} gated, {len(dense_picks)} dense, {len(COMBOS)} combinations; best gated {name} "
        f"({best['valid_error']:.4f} at {best['b1_latency_us']:.1f} us), dense rival trial {rival['trial']} "
        f"({rival['valid_error']:.4f} at {rival['b1_latency_us']:.1f} us)"
    )


if __name__ == "__main__":
    main()
