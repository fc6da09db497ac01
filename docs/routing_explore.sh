#!/usr/bin/env bash
# Exploration for the routing issue: one seed, 30 epochs, validation error only (chosen on validation).
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
C=".venv/bin/condnet train --config configs/mnist_condnet.toml --set train.max_epochs=30 --set train.patience=30"
GATED="--set model.widths=[64,1024] --set model.block_size=[64,64] --set model.gated=[false,true] --set model.tau=0.125 --set model.p_min=0.01 --set model.p_max=0.99"
$C --set model.kind=nn --set model.widths=[64] --set model.block_size=[64] --out runs/routing_explore/nn64 --force
$C --set model.kind=nn --set model.widths=[64,128] --set model.block_size=[64,128] --out runs/routing_explore/nn64-128 --force
for est in reinforce straight_through gumbel; do
  $C $GATED --set train.estimator=$est --out runs/routing_explore/trunk64-g1024-$est --force
done
