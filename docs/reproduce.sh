#!/usr/bin/env bash
# Everything behind docs/reproduce/ and section 4 of docs/RESULTS.md, from scratch, on MNIST (the only
# dataset on these machines). Resumable: rerun it after an interruption. About 2 hours on 2 cores of an AMD
# EPYC, longer on the Intel Xeon VM of RESULTS 10 (the CIFAR-10 table alone 74 min; RESULTS 4).
# Budget choices: at most 30 epochs (patience 8) for MNIST rows and ablations, 15 (patience 5) for the
# CIFAR-10 / SVHN architectures; two training workers of one core each; timing afterwards on one core.
# Extra arguments go to every command: `bash docs/reproduce.sh --retime` keeps the trained runs and
# times them all again (after an engine change), then rewrites the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
C=.venv/bin/condnet
X=("$@")
R=docs/reproduce
$C reproduce mnist --seeds 5 --workers 2 --threads 1 --report $R \
  --set train.max_epochs=30 --set train.patience=8 "${X[@]}"
for table in cifar10 svhn; do
  $C reproduce $table --seeds 3 --workers 2 --threads 1 --report $R/$table-on-mnist \
    --out runs/reproduce/$table-on-mnist --set data.name=mnist --set data.valid_size=10000 \
    --set train.max_epochs=15 --set train.patience=5 "${X[@]}"
done
$C ablate no-regularizers --seeds 3 --workers 2 --threads 1 --report $R --set train.max_epochs=30 --set train.patience=8 "${X[@]}"
$C ablate lambda-v --seeds 3 --workers 2 --threads 1 --report $R "${X[@]}"
$C ablate lambda-s --seeds 2 --workers 2 --threads 1 --report $R --set train.max_epochs=30 --set train.patience=8 "${X[@]}"
# The SVHN architectures again with the lambda_s warm-up (train.lambda_s_warmup, not in the paper):
# the rows that collapse above train when the rate is pulled to tau only after 5 epochs.
$C reproduce svhn --seeds 3 --workers 2 --threads 1 --report $R/svhn-on-mnist-warmup \
  --out runs/reproduce/svhn-on-mnist-warmup --set data.name=mnist --set data.valid_size=10000 \
  --set train.max_epochs=15 --set train.patience=5 --set train.lambda_s_warmup=5 "${X[@]}"
# The CIFAR-10 condnet rows again with the warm-up (the bdNN and NN rows do not depend on it).
$C reproduce cifar10 --rows condnet-1536x2-b64,condnet-256-512-b16,condnet-640x2-b64 --seeds 3 --workers 2 \
  --threads 1 --report $R/cifar10-on-mnist-warmup --out runs/reproduce/cifar10-on-mnist-warmup \
  --set data.name=mnist --set data.valid_size=10000 --set train.max_epochs=15 --set train.patience=5 \
  --set train.lambda_s_warmup=5 "${X[@]}"
