#!/usr/bin/env bash
# RESULTS 7.2: the engine before and after a change, alternating, two rounds, one JSON per call; then
# docs/gates_bench_table.py OUT prints the table. BEFORE and AFTER are package directories (src/ of
# two checkouts, see docs/gates_identity.sh); TRAINED is a directory of trained runs made by
# docs/gates_identity.sh with the BEFORE version (tree, topk, default). Run on an otherwise idle machine.
# Usage: bash docs/gates_bench.sh BEFORE AFTER TRAINED OUT
set -u
BEFORE=$1; AFTER=$2; TRAINED=$3; OUT=$4; mkdir -p "$OUT"; cd "$(dirname "$0")/.."
rec() { name=$1; shift; for round in 1 2; do for side in before after; do
  src=$BEFORE; [ $side = after ] && src=$AFTER
  PYTHONPATH=$src .venv/bin/python -m condnet.cli bench "$@" --batch 1,2,50,256 --threads 1,2 --json \
    > "$OUT/$name.$side.$round.json"
done; done; echo "$name done"; }
rec dense-784-64-10 --arch 784,64,10 --kind nn
rec dense-3072-640-640-10 --arch 3072,640,640,10 --kind nn
rec cifar-640-64-d018 --arch 3072,640,640,10 --block-size 64 --density 0.18
rec svhn-208-128-16-d018 --arch 3072,208,128,10 --block-size 16 --density 0.18
rec trained-tree "$TRAINED/tree"
rec trained-topk "$TRAINED/topk"
rec trained-bernoulli "$TRAINED/default"
