"""Two runs of docs/engine_bench.sh side by side (before, after): per record, the engine's time over ONNX
Runtime's measured in the same process, and the gated records' efficiency against the dense twin in ORT.
Times of two runs are not comparable on a shared VM; each run's ratio to ORT is.
Usage: python docs/engine_before_after.py BEFORE_DIR AFTER_DIR"""

import json
import pathlib
import sys

before_dir, after_dir = (pathlib.Path(arg) for arg in sys.argv[1:3])
print(
    "| model | batch | threads | before: engine / ORT | after: engine / ORT | after / before | "
    "efficiency vs ORT before -> after | after: of roofline |"
)
print("|---|---|---|---|---|---|---|---|")
for path in sorted(after_dir.glob("*.json")):
    if not (before_dir / path.name).is_file():
        continue
    old = {(r["batch"], r["threads"]): r for r in json.loads((before_dir / path.name).read_text())["records"]}
    for r in json.loads(path.read_text())["records"]:
        o = old.get((r["batch"], r["threads"]))
        if o is None:
            continue
        before, after = o["engine_ms"] / o["ort_ms"], r["engine_ms"] / r["ort_ms"]
        roofline = f"{r['of_roofline']:.2f} ({r['bound']})" if "of_roofline" in r else "-"
        efficiency = f"{o['efficiency_vs_ort']:.2f} -> {r['efficiency_vs_ort']:.2f}"
        print(
            f"| {path.stem} | {r['batch']} | {r['threads']} | {before:.2f} | {after:.2f} | "
            f"{after / before:.2f} | {efficiency} | {roofline} |"
        )
