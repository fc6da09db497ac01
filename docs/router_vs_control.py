"""Two groups of finished runs, a learned router and its control (same architecture, other router): each
run's test error by seed, each group's mean ± sample std, the difference in standard errors, and the
exact one-sided permutation p-value (every split of the pooled runs into two groups of the same sizes:
the share whose difference of means is at least the observed one). Reads only metrics.json.

Usage: python docs/router_vs_control.py LEARNED_RUN... -- CONTROL_RUN...
"""

import itertools
import statistics
import sys

from condnet.run_dir import RunDir


def errors(paths: list[str]) -> dict[int, float]:
    """{seed: test error % (sample mode)} of finished runs."""
    found = {}
    for path in paths:
        metrics = RunDir(RunDir(path).require_finished()).metrics()
        found[int(metrics["seed"])] = 100 * metrics["test_error"]["sample"]  # as the frontier reports
    return found


def permutation_p(first: list[float], second: list[float]) -> float:
    """P(mean(A) - mean(B) >= the observed difference of second minus first) over every split."""
    pooled, observed = first + second, statistics.mean(second) - statistics.mean(first)
    total = hits = 0
    for chosen in itertools.combinations(range(len(pooled)), len(first)):
        a = [pooled[i] for i in chosen]
        b = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += statistics.mean(b) - statistics.mean(a) >= observed - 1e-12
        total += 1
    return hits / total


if __name__ == "__main__":
    if "--" not in sys.argv:
        sys.exit(__doc__)
    cut = sys.argv.index("--")
    learned, control = errors(sys.argv[1:cut]), errors(sys.argv[cut + 1 :])
    for name, group in (("learned", learned), ("control", control)):
        values = list(group.values())
        seeds = ", ".join(f"seed {s}: {e:.2f}" for s, e in sorted(group.items()))
        spread = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (n = {len(values)})"
        print(f"{name}: {seeds}; mean {spread}")
    a, b = list(learned.values()), list(control.values())
    difference = statistics.mean(b) - statistics.mean(a)
    se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    print(f"control minus learned: {difference:.2f} points, {difference / se:.1f} standard errors; "
          f"one-sided exact permutation p = {permutation_p(a, b):.3f}")  # fmt: skip
