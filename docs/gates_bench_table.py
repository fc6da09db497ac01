"""RESULTS 7.2: the table of `bash docs/gates_bench.sh ... OUT` (the median of two rounds per side), the
geometric mean of after / before per thread count, and the noise floor (the same code's second round
over its first). Usage: python docs/gates_bench_table.py OUT"""

import json
import statistics as st
import sys

OUT = sys.argv[1]
NAMES = ["dense-784-64-10", "dense-3072-640-640-10", "cifar-640-64-d018", "svhn-208-128-16-d018",
         "trained-tree", "trained-topk", "trained-bernoulli"]  # fmt: skip


def records(name: str, side: str, round_: int) -> dict:
    with open(f"{OUT}/{name}.{side}.{round_}.json") as f:
        return {(r["batch"], r["threads"]): r for r in json.load(f)["records"]}


def median_ms(runs: dict, side: str, key, field: str = "engine_ms") -> float:
    return st.median(runs[(side, r)][key][field] for r in (1, 2))


print("| record | batch | threads | engine before us | engine after us | after / before | ORT us |")
print("|---|---|---|---|---|---|---|")
moved, noise = {1: [], 2: []}, {1: [], 2: []}
for name in NAMES:
    runs = {(side, r): records(name, side, r) for side in ("before", "after") for r in (1, 2)}
    for key in sorted(runs[("before", 1)]):
        before, after = median_ms(runs, "before", key), median_ms(runs, "after", key)
        ort = median_ms(runs, "after", key, "ort_ms")
        moved[key[1]].append(after / before)
        noise[key[1]] += [runs[(side, 2)][key]["engine_ms"] / runs[(side, 1)][key]["engine_ms"]
                          for side in ("before", "after")]  # fmt: skip
        print(f"| {name} | {key[0]} | {key[1]} | {1e3 * before:.1f} | {1e3 * after:.1f} | "
              f"{after / before:.2f} | {1e3 * ort:.1f} |")  # fmt: skip
print()
for threads in (1, 2):
    m, n = moved[threads], noise[threads]
    print(
        f"{threads} thread(s): after / before geometric mean {st.geometric_mean(m):.3f} "
        f"({min(m):.2f}-{max(m):.2f}); same code, round 2 / round 1: {min(n):.2f}-{max(n):.2f}"
    )
