#!/usr/bin/env bash
# The runs behind experiments/domain_incremental/README.md: every frozen-feature memory on domain-incremental
# streams (the same 10 classes in every experience; the images turned by 0, 30, 60, 90 degrees).
#   bash experiments/domain_incremental/sweep.sh [rotations|corruptions]   # one part, or both in turn
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/domain_incremental
declare -A STREAMS=([digits_eff]="dataset=digits encoder=efficientnet_lite0" [fmnist_eff]="encoder=efficientnet_lite0")
PART=${1:-all}
MEMORIES="prototypes slda ranpac ncm knn prototypes_snn"

if [[ $PART == all || $PART == rotations ]]; then
  for s in digits_eff fmnist_eff; do
    for m in $MEMORIES; do
      seeds=0,1,2
      # Fashion-MNIST, for the session's time: kNN seeds 0 and 1; the spiking memory not run yet
      [[ $s == fmnist_eff && $m == knn ]] && seeds=0,1
      [[ $s == fmnist_eff && $m == prototypes_snn ]] && continue
      $PY -m neurocl.run --multirun ${STREAMS[$s]} scenario=domain_incremental memory=$m seed=$seeds \
          hydra.sweep.dir=$OUT/$s/$m
    done
  done
fi

if [[ $PART == corruptions ]]; then  # clean, noise, blur, contrast, occlusion: seed 0 (not run yet; features cached)
  $PY -m neurocl.run --multirun ${STREAMS[fmnist_eff]} scenario=domain_incremental scenario.domains=corruptions \
      memory=prototypes,slda,ncm seed=0 hydra.sweep.dir=$OUT/fmnist_eff_corruptions
fi
