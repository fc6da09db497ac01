"""Choose issue 19's frontier configs (routed input layers against the dense front) from the searches'
journals, on validation only, and write them to configs/frontier/mnist_input/ (fully resolved TOML;
`condnet frontier mnist --configs configs/frontier/mnist_input` trains them on fresh seeds).

Rules (condnet.search.choose.front_picks), on the searches' validation errors and search-time latencies:
- gated: each gated space's PER_SPACE Pareto trials nearest the dense front (smallest gap: validation
  error minus that of the best dense trial at most as slow), the candidates for a point on it;
- the hash control beside each learned pick: the same config with its router swapped for the hash
  router the hash space's own pick used (learned routing counts only where it beats hashing);
- the active twin beside each learned pick: the same training, dense, as wide as the units one example
  computes (k blocks; one for the tree): where the gated net's extra capacity goes (the account of
  issue 19) is its error against this twin at about its latency;
- the balanced twin beside each switch pick: the same config with the balanced_switch router (the
  switch router that cannot send every example to one block while training): a switch pick that
  collapsed is a dense net; its twin says what the same net does when it must route;
- dense: every DENSE_STEP-th point of the dense Pareto set over its whole range, each gated pick's
  rival and the dense front's next point above it (search-time latencies are noisy). Distillation is
  a searched dimension on both sides: each config keeps what its trial drew.
A gated trial that computes every block (k = the number of blocks) is left out: it skips nothing. A
space whose journal is missing is skipped, and said.

    .venv/bin/python docs/frontier_input_configs.py [JOURNAL_DIR]     (default: docs/search)
"""

from __future__ import annotations

import sys
from pathlib import Path

from condnet.config import to_toml
from condnet.search.choose import complete_trials, front_picks, gap
from condnet.search.space import load_space

ROOT = Path(__file__).resolve().parent.parent
JOURNALS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "search"
OUT = ROOT / "configs" / "frontier" / "mnist_input"
DENSE = "mnist_wide_dense_distill"
LEARNED = {
    "topk": "mnist_input_topk_distill",
    "switch": "mnist_input_switch_distill",
    "tree": "mnist_input_tree_distill",
}
HASH = ("hash", "mnist_input_hash_distill")
PER_SPACE = 1
DENSE_STEP = 2


def trials(short: str, stem: str) -> list:
    journal = JOURNALS / f"{stem}.journal.log"
    if not journal.is_file():
        print(f"{stem}: no journal at {journal}: skipped")
        return []
    found = complete_trials(journal, load_space(ROOT / "configs" / "search" / f"{stem}.toml").name, short)
    return [t for t in found if skips_work(t)]


def blocks_per_example(model) -> int:
    """The routed input layer's blocks computed per example: one leaf for a tree, k for the others."""
    return 1 if model.router == "tree" else model.k[0]


def skips_work(t) -> bool:
    """Whether the trial's net computes fewer blocks than it has: k = every block (4 of 4) is a dense net
    whose blocks are scaled per example, not conditional computation, and is not a gated pick."""
    model = t.resolved().model
    if model.kind == "nn":
        return True  # the dense side: nothing to skip
    return blocks_per_example(model) < model.widths[0] // model.block_size[0]


def active_twin(t):
    """The pick's config as a dense one-layer net of the units one example computes, trained the same way."""
    model = t.resolved().model
    active = model.block_size[0] * blocks_per_example(model)
    dense = ["model.kind=nn", 'model.router="bernoulli"', 'model.router_input="layer"', "model.k=[1]"]
    return t.resolved([*dense, f"model.widths=[{active}]", f"model.block_size=[{active}]"])


def main() -> None:
    dense = trials("dense", DENSE)
    learned = [trials(short, stem) for short, stem in LEARNED.items()]
    hashed = trials(*HASH)
    gated, dense_picks = front_picks(dense, [*learned, hashed], PER_SPACE, DENSE_STEP)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.toml"):
        old.unlink()

    def describe(t) -> str:
        error, us, bits = t.valid_error, t.b1_latency_us, t.share_entropy_bits
        spread = "" if bits is None else f", load entropy {'/'.join(f'{b:.2f}' for b in bits)} bits"
        return f"{t.name}: valid {error:.4f} at {us:.1f} us, {gap(t, dense):+.4f} to dense{spread}"

    def write(name: str, comment: str, cfg) -> None:
        (OUT / f"{name}.toml").write_text(f"# {comment}\n" + to_toml(cfg))

    for t in gated + dense_picks:
        comment = f"chosen by docs/frontier_input_configs.py: {describe(t)} (search timing)"
        write(t.name, comment, t.resolved())
    for t in gated:
        if t.space in LEARNED:
            cfg = active_twin(t)
            comment = f"{t.name}, dense, of its active width ({cfg.model.widths[0]} units): the account"
            write(f"{t.name}_active_dense", comment, cfg)
    hash_pick = next((t for t in gated if t.space == HASH[0]), None)
    if hash_pick is None:
        print(f"{HASH[1]}: no trial yet: no hash controls")
    else:
        router = hash_pick.resolved().model.router
        for t in gated:
            if t.space in LEARNED:
                comment = f"{t.name} with the hash control's router ({router}, as {hash_pick.name}): issue 19"
                write(f"{t.name}_{router}", comment, t.resolved([f'model.router="{router}"']))
    for t in gated:
        if t.resolved().model.router == "switch":
            comment = f"{t.name} with the router that cannot collapse (balanced_switch): issue 19's account"
            write(f"{t.name}_balanced_switch", comment, t.resolved(['model.router="balanced_switch"']))
    for t in gated + dense_picks:
        print(describe(t))


if __name__ == "__main__":
    main()
