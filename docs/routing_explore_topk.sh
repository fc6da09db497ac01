#!/usr/bin/env bash
# Exploration for the routing issue, top-k routers: one seed, 30 epochs, validation error only.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
C=".venv/bin/condnet train --config configs/mnist_condnet.toml --set train.max_epochs=30 --set train.patience=30"
TRUNK="--set model.widths=[64,1024] --set model.block_size=[64,64] --set model.gated=[false,true] --set model.router=topk"
$C $TRUNK --set model.k=2 --out runs/routing_explore/trunk64-g1024-top2 --force
$C $TRUNK --set model.k=2 --set model.router_detach=false --out runs/routing_explore/trunk64-g1024-top2-attached --force
$C $TRUNK --set model.k=1 --out runs/routing_explore/trunk64-g1024-top1 --force
