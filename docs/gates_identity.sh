#!/usr/bin/env bash
# RESULTS 7.1: two epochs of configs/default.toml per gate and estimator with the package at SRC;
# prints each run's model.safetensors SHA-256 (16 hex digits) and its test errors. Run it for two
# versions and compare, e.g. SRC=/tmp/wt_before/src after `git worktree add /tmp/wt_before 72b22bb`
# (copy src/condnet/engine/_microkernel*.so into it). Usage: bash docs/gates_identity.sh SRC OUT
set -u
SRC=$1; OUT=$2; mkdir -p "$OUT"; cd "$(dirname "$0")/.."
run() { name=$1; shift
  PYTHONPATH=$SRC .venv/bin/python -m condnet.cli train --force --config configs/default.toml \
    --set train.max_epochs=2 "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  echo "$name $(sha256sum < "$OUT/$name/model.safetensors" | cut -c1-16) $(grep -o 'test error.*' "$OUT/$name.log")"; }
run default
run nn --set model.kind=nn
run bdnn --set model.kind=bdnn
run topk --set model.router=topk --set model.k=2
run tree --set model.router=tree --set train.lambda_harden=0.01 --set train.tree_soft_epochs=1
run st --set train.estimator=straight_through
run gumbel --set train.estimator=gumbel --set train.baseline=moving_average
run mixed --set model.gated=[false,true] --set model.router=topk --set model.k=2 --set model.dropout=0.1
