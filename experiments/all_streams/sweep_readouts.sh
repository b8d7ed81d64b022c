#!/usr/bin/env bash
# Which readout carries the store's accuracy on each stream: every readout family on the same prototypes, seed 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/all_streams
declare -A STREAMS=([digits_eff]="dataset=digits encoder=efficientnet_lite0" [digits_px]="dataset=digits encoder=pixels"
                    [fmnist_px]="encoder=pixels" [fmnist_eff]="encoder=efficientnet_lite0")
for s in digits_eff digits_px fmnist_px fmnist_eff; do
  $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes memory.readout=lda,vote+lda,kernel_ridge seed=0 \
      hydra.sweep.dir=$OUT/$s/readouts
done
# (auto on digits_eff, digits_px and fmnist_px was rerun here with the final kernel ridge)
for s in digits_eff digits_px fmnist_px; do
  [ -f $OUT/$s/auto/0/results.json ] || \
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes memory.readout=auto seed=0 hydra.sweep.dir=$OUT/$s/auto
done
