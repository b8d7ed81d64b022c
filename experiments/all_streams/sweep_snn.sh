#!/usr/bin/env bash
# The spiking memory against the store's vote on the same prototypes, on every stream, with graded corruptions.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/all_streams
declare -A STREAMS=([digits_eff]="dataset=digits encoder=efficientnet_lite0" [digits_px]="dataset=digits encoder=pixels"
                    [fmnist_px]="encoder=pixels" [fmnist_eff]="encoder=efficientnet_lite0")
for s in digits_eff digits_px fmnist_px fmnist_eff; do
  $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes_snn conditions=graded seed=0,1,2 hydra.sweep.dir=$OUT/$s/snn
done
