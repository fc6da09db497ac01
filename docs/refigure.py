"""Draw a figure of `condnet frontier` or `condnet reproduce`/`ablate` again from its CSV (both commands
write the CSV beside the figure), without training or timing anything: after a change to the figure's
code, or to look at an old report with it. The figures that plot learning curves read the runs its CSV names.
Usage: python docs/refigure.py docs/frontier/mnist.csv [OUT.png]   (default: beside the CSV)
       python docs/refigure.py docs/reproduce/cifar10-on-mnist/cifar10.csv"""

import csv
import sys
from pathlib import Path

from condnet.reproduce import figures, frontier
from condnet.reproduce.report import summarize
from condnet.reproduce.tables import ABLATIONS, TABLES

source = Path(sys.argv[1])
out = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".png")
with open(source) as f:
    records = list(csv.DictReader(f))
if "row" not in records[0]:  # a frontier report
    for r in records:
        r["gated"] = r["gated"] == "True"
        for key in ("test_error", "b1_latency_us", "b50_pass_ms"):
            r[key] = float(r[key])
    frontier.figure(records, frontier.summarize(records), f"{source.stem}: gated against dense", out)
else:  # a reproduce or ablate report: the table is named by the file, the data by its directory
    table = {**TABLES, **ABLATIONS}[source.stem]
    numeric = {"test_error_sample", "test_error_threshold", "macs_fraction", "train_seconds",
               "batch1_dense_ms", "batch1_engine_ms", "batch1_ort_ms", "test_pass_dense_s",
               "test_pass_engine_s"}  # fmt: skip
    for r in records:
        r.update({k: float(v) if v not in (None, "") else None for k, v in r.items() if k in numeric})
    summaries = summarize(table, records)
    data = source.parent.name.split("-on-")[1].removesuffix("-warmup") if "-on-" in source.parent.name else ""
    title = table.name + (f" architectures trained on {data}" if data and data != table.dataset else "")
    title += " (with the lambda_s warm-up)" if source.parent.name.endswith("-warmup") else ""
    if table.plot == "pareto":
        figures.pareto(summaries, records, title, out)
    elif table.plot == "tradeoff":
        figures.tradeoff(summaries, title, out)
    else:  # learning curves: read from the runs the CSV names (relative to the checkout)
        runs = {}
        for r in records:
            runs.setdefault(r["row"], []).append(Path(r["run_dir"]))
        if not all(d.is_dir() for dirs in runs.values() for d in dirs):
            sys.exit(f"{source}: its figure plots learning curves: train the runs (`condnet {table.name}`)")
        figures.curves(runs, title, out)
print(f"wrote {out}")
