#!/usr/bin/env bash
# Gating trained dense nets after the fact (condnet sparsify) on MNIST, 5 seeds (100-104, the frontier's):
#   trunk: dense 784-64-1024-10 relu; its 1024-unit layer becomes top-1 of 16 blocks of 64, routed from the
#          64-unit trunk: the architecture of configs/frontier/mnist/combo_topk.toml (routing learned from
#          scratch), so the two tell "more capacity, then gating" apart from "learning the routing";
#   input: dense 784-512-10 relu; its layer becomes top-2 of 8 blocks of 64, routed from the pixels
#          (seeds 100-102 only: its dense net costs 8 times the trunk's to train).
# Then every fine-tuned run is set against dense 784-128-10 relu (trained here on the same seed) with
# `condnet versus` (timed on one core). About 35 minutes on one core.
#     bash docs/sparsify_mnist.sh [RUNS_DIR]      (default: runs/sparsify)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
OUT=${1:-runs/sparsify}
C=".venv/bin/condnet"
BASE="--config configs/mnist_condnet.toml --set model.kind=nn --set model.activation=relu --set train.max_epochs=30 --set train.patience=8"
TUNE="--set train.max_epochs=20 --set train.patience=5"
for seed in 100 101 102 103 104; do
  d=$OUT/seed-$seed
  [ -f "$d/dense_trunk/finished.json" ] || $C train $BASE --set 'model.widths=[64, 1024]' --set 'model.block_size=[64, 64]' --seed $seed --out "$d/dense_trunk" --force
  [ -f "$d/dense_128/finished.json" ] || $C train $BASE --set 'model.widths=[128]' --set 'model.block_size=[128]' --seed $seed --out "$d/dense_128" --force
  [ -f "$d/trunk/sparsify.json" ] || $C sparsify "$d/dense_trunk" --out "$d/trunk" --layer 1 --block-size 64 --k 1 --seed $seed $TUNE --force
done
for seed in 100 101 102; do
  d=$OUT/seed-$seed
  [ -f "$d/dense_wide/finished.json" ] || $C train $BASE --set 'model.widths=[512]' --set 'model.block_size=[64]' --seed $seed --out "$d/dense_wide" --force
  [ -f "$d/input/sparsify.json" ] || $C sparsify "$d/dense_wide" --out "$d/input" --layer 0 --block-size 64 --k 2 --seed $seed $TUNE --force
done
for seed in 100 101 102 103 104; do
  d=$OUT/seed-$seed
  for kind in trunk input; do
    [ -f "$d/$kind/sparsify.json" ] || continue
    echo "== seed $seed, $kind"; cat "$d/$kind/sparsify.json"
    $C versus "$d/$kind/finetuned" "$d/dense_128"
  done
done
