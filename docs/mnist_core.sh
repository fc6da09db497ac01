#!/usr/bin/env bash
# The MNIST runs behind docs/RESULTS.md (issue: condnet core). Two queues run side by side, each
# process on one thread, so the two cores are not shared by one run's threads and another's.
# Usage: bash docs/mnist_core.sh [RUNS_DIR]    (default: runs/mnist_core)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/mnist_core}
BIN=.venv/bin
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$RUNS"
train() { $BIN/condnet train --force "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }

queue_a() {
  for s in 0 1 2; do train --config configs/mnist_condnet.toml --seed $s --out "$RUNS/condnet-s$s"; done
  # bdNN at the rate condnet learned (mean over its seeds and the test set, sample mode)
  rate=$($BIN/python -c "import json,sys; r=[json.load(open(f'$RUNS/condnet-s{s}/metrics.json'))['activation_rate'][0] for s in range(3)]; print(sum(r)/3)")
  for s in 0 1 2; do
    train --config configs/mnist_condnet.toml --set model.kind=bdnn --set "model.tau=$rate" --seed $s --out "$RUNS/bdnn-s$s"
  done
}
queue_b() {
  for s in 0 1 2; do train --config configs/mnist_nn256.toml --seed $s --out "$RUNS/nn256-s$s"; done
  for s in 0 1 2; do train --config configs/mnist_nn32.toml --seed $s --out "$RUNS/nn32-s$s"; done
  for s in 0 1 2; do train --config configs/mnist_paper.toml --seed $s --out "$RUNS/paper-s$s"; done
}
queue_a & a=$!
queue_b & b=$!
wait $a && wait $b
$BIN/condnet summary "$RUNS"/condnet-s? "$RUNS"/bdnn-s? "$RUNS"/nn256-s? "$RUNS"/nn32-s? "$RUNS"/paper-s?
