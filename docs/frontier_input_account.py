"""Issue 19's account of the frontier's gated configs: how each routed input layer splits the data, on
every seed (`condnet experts` on each finished frontier run, validation split, threshold mode): the
load's entropy, the information the choice carries about the label, the error of the router's choice
against uniformly random blocks and the label-aware oracle, and each expert alone on its own share
and on everyone else's (over the experts, each weighed by the examples it is judged on: a median would
let an expert with a handful of examples speak for a collapsed router's one real expert).

    .venv/bin/python docs/frontier_input_account.py RUNS     (RUNS: the frontier's --out directory)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from condnet.config import load_config
from condnet.report.experts import run_report
from condnet.run_dir import CONFIG, RunDir


def percent(values) -> str:
    return f"{100 * statistics.mean(values):.2f}"


def weighted(report, field: str) -> float:
    """An expert-alone error over the experts, each weighed by its examples: its share on its own share,
    the rest on the others' (an expert without examples there has no error there, and weighs 0)."""
    pairs = [(getattr(e, field), e.share if field == "alone_own" else 1 - e.share) for e in report.experts]
    pairs = [(v, w) for v, w in pairs if v is not None]
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs)


def row(config: str, reports) -> str:
    first = reports[0]
    entropies = " / ".join(f"{r.share_entropy_bits:.2f}" for r in reports)
    own = [weighted(r, "alone_own") for r in reports]
    others = [weighted(r, "alone_others") for r in reports]
    errors = [percent([getattr(r, f"error_{w}") for r in reports]) for w in ("router", "random", "oracle")]
    cells = [
        config,
        f"{first.gate}, {first.n_blocks} blocks, {first.blocks_per_example:g} per example",
        str(len(reports)),
        f"{entropies} (of {first.max_entropy_bits:.2f})",
        f"{statistics.mean(r.label_information_bits for r in reports):.2f}",
        " / ".join(errors),
        f"{percent(own)} / {percent(others)}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    runs = Path(sys.argv[1])
    print(
        "| config | routed layer | seeds | load entropy, bits, each seed | I(block; label) bits "
        "| error % (mean over seeds): router / random blocks / oracle "
        "| expert alone %, weighed by examples: own share / others |"
    )
    print("|---|---|---|---|---|---|---|")
    for config in sorted(p for p in runs.iterdir() if p.is_dir()):
        seeds = sorted(s for s in config.glob("seed-*") if RunDir(s).is_finished())
        if seeds and load_config(seeds[0] / CONFIG).model.is_gated:
            print(row(config.name, [run_report(s, "valid") for s in seeds]))


if __name__ == "__main__":
    main()
