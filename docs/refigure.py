"""Draw a frontier figure again from its CSV (`condnet frontier` writes both), without training or timing
anything: after a change to the figure's code, or to look at an old report with it.
Usage: python docs/refigure.py docs/frontier/mnist.csv [OUT.png]   (default: beside the CSV)"""

import csv
import sys
from pathlib import Path

from condnet.reproduce.frontier import figure, summarize

source = Path(sys.argv[1])
out = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".png")
with open(source) as f:
    records = list(csv.DictReader(f))
for r in records:
    r["gated"] = r["gated"] == "True"
    for key in ("test_error", "b1_latency_us", "b50_pass_ms"):
        r[key] = float(r[key])
figure(records, summarize(records), f"{source.stem}: gated against dense", out)
print(f"wrote {out}")
