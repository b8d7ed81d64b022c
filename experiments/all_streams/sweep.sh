#!/usr/bin/env bash
# The runs behind experiments/all_streams/README.md: every frozen-feature memory on every stream we have.
#   bash experiments/all_streams/sweep.sh [memories|readouts|spiking|reward]   # one part, or all in turn
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/all_streams
declare -A STREAMS=([digits_eff]="dataset=digits encoder=efficientnet_lite0" [digits_px]="dataset=digits encoder=pixels"
                    [fmnist_px]="encoder=pixels" [fmnist_eff]="encoder=efficientnet_lite0")
PART=${1:-all}

if [[ $PART == all || $PART == memories ]]; then
  for s in digits_eff digits_px fmnist_px fmnist_eff; do
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes memory.readout=vote seed=0,1,2 hydra.sweep.dir=$OUT/$s/prototypes
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes memory.readout=auto seed=0,1,2 hydra.sweep.dir=$OUT/$s/auto
    # (run here as auto: seed 0, and auto12: seeds 1,2)
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=slda,ncm,knn seed=0 hydra.sweep.dir=$OUT/$s/closed_form
  done
  # RanPAC: one seed per stream (its 5,000 x 5,000 eigendecompositions take minutes per run on 2 cores);
  # 3 seeds on fmnist_eff in experiments/split_fashion_mnist.
  for s in digits_eff digits_px fmnist_px; do
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=ranpac seed=0 hydra.sweep.dir=$OUT/$s/ranpac
  done
fi

if [[ $PART == all || $PART == readouts ]]; then  # which readout carries the accuracy: each family alone, seed 0
  for s in digits_eff digits_px fmnist_px fmnist_eff; do
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes memory.readout=lda,vote+lda,kernel_ridge seed=0 \
        hydra.sweep.dir=$OUT/$s/readouts
  done
fi

if [[ $PART == all || $PART == spiking ]]; then  # the spiking readout against the vote, graded corruptions
  for s in digits_eff digits_px fmnist_px fmnist_eff; do
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes_snn memory.network=topk_currents conditions=graded seed=0,1,2 hydra.sweep.dir=$OUT/$s/snn
  done
fi

if [[ $PART == all || $PART == reward ]]; then  # one reward per label neuron instead of one per query
  for s in digits_eff digits_px fmnist_px fmnist_eff; do
    $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes_snn memory.network=topk_currents memory.reward_per=neuron conditions=graded seed=0,1,2 \
        hydra.sweep.dir=$OUT/$s/snn_reward_per_neuron
  done
fi
