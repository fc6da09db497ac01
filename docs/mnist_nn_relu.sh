#!/usr/bin/env bash
# The paper's dense MNIST baselines (NN-32, NN-256) with relu instead of tanh, everything else as in
# configs/mnist_nn32.toml / mnist_nn256.toml (issue: condnet core, section 1 of docs/RESULTS.md).
# A one-seed scouting of NN-32 (seed 0: dropout, relu, L2, rates, batch) chose relu; seeds 1-3 here
# were not used to choose it. Two runs at a time, one thread each.
# Usage: bash docs/mnist_nn_relu.sh [RUNS_DIR]    (default: runs/mnist_nn_relu; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/mnist_nn_relu}
BIN=.venv/bin
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$RUNS"
run() {  # name, config, seed; a finished run is kept
  [ -f "$RUNS/$1/metrics.json" ] && return
  $BIN/condnet train --force --config "$2" --seed "$3" --set model.activation=relu --out "$RUNS/$1" \
    > /dev/null 2>&1 || { echo "failed: $1" >&2; exit 1; }
}
{ for s in 1 2 3; do run nn32-relu-s$s configs/mnist_nn32.toml $s; done; } & a=$!
{ for s in 1 2 3; do run nn256-relu-s$s configs/mnist_nn256.toml $s; done; } & b=$!
wait $a && wait $b
$BIN/condnet summary "$RUNS"/nn32-relu-s? "$RUNS"/nn256-relu-s?
