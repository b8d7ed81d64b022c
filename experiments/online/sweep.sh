#!/usr/bin/env bash
# The runs behind experiments/online/README.md: every frozen-feature memory on online i-Blurry-50-10 streams
# (5 tasks, batches of 16, one pass, the memory never told a task), anytime evaluation on a fixed stratified
# subset of 2,000 test samples (digits: its whole 360-sample test split) of the classes seen so far.
#   bash experiments/online/sweep.sh [digits|fmnist]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/online
PART=${1:-all}
MEMORIES="prototypes slda ncm knn ranpac prototypes_snn"  # digits; Fashion-MNIST below

if [[ $PART == all || $PART == digits ]]; then  # 1,437 samples: an evaluation every 100 (i-Blurry's eval_period)
  for m in $MEMORIES; do
    seeds=0,1,2
    [[ $m == ranpac ]] && seeds=0  # its eigendecomposition before each of 20 answers: 14 minutes a run here
    $PY -m neurocl.run --multirun dataset=digits encoder=efficientnet_lite0 scenario=online memory=$m seed=$seeds \
        hydra.sweep.dir=$OUT/digits_eff/$m
  done
fi

if [[ $PART == all || $PART == fmnist ]]; then  # 60,000 samples: an evaluation every 2,000
  for m in prototypes slda ncm knn prototypes_snn; do  # kNN and the spiking memory since 2026-12-08
    $PY -m neurocl.run --multirun encoder=efficientnet_lite0 scenario=online scenario.eval_every=2000 memory=$m \
        seed=0,1,2 hydra.sweep.dir=$OUT/fmnist_eff/$m
  done
  # Not run: RanPAC (one run had finished 1 of 5 tasks after 17 minutes: its 5,000 x 5,000 eigendecomposition
  # before each of 35 answers). Its command:
  #   $PY -m neurocl.run --multirun encoder=efficientnet_lite0 scenario=online scenario.eval_every=2000 memory=ranpac \
  #       seed=0 hydra.sweep.dir=$OUT/fmnist_eff/ranpac
  # A diagnostic row: the store with its LDA readout alone (seed 0)
  $PY -m neurocl.run --multirun encoder=efficientnet_lite0 scenario=online scenario.eval_every=2000 memory=prototypes \
      memory.readout=lda seed=0 hydra.sweep.dir=$OUT/fmnist_eff/prototypes_lda
fi
