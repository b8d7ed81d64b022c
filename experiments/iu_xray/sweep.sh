#!/usr/bin/env bash
# The runs behind experiments/iu_xray/README.md: every memory on the IU X-ray reports stream
# (experiment=iu_xray: 10 MeSH classes in 5 experiences of 2, all-MiniLM-L6-v2 features), 3 seeds.
#   bash experiments/iu_xray/sweep.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/iu_xray
export HF_HUB_OFFLINE=1
# the default memory, its readouts one by one, and the spiking memory over the same prototypes
$PY -m neurocl.run --multirun experiment=iu_xray memory=prototypes memory.readout=auto,vote,lda,whitened_ncm,vote+lda,kernel_ridge \
    seed=0,1,2 hydra.sweep.dir=$OUT/prototypes
$PY -m neurocl.run --multirun experiment=iu_xray memory=prototypes_snn seed=0,1,2 hydra.sweep.dir=$OUT/snn
# frozen-feature baselines
$PY -m neurocl.run --multirun experiment=iu_xray memory=slda,ncm,knn,ranpac,avalanche_slda seed=0,1,2 \
    hydra.sweep.dir=$OUT/closed_form
# the multi-label variant: every frequent MeSH term of every report, labels in 2-label experiences
$PY -m neurocl.run --multirun experiment=iu_xray dataset.labels=multi scenario=multi_label \
    memory=prototypes,slda,ncm,knn seed=0,1,2 hydra.sweep.dir=$OUT/multi_label
# Avalanche strategies trained by SGD on the same features
$PY -m neurocl.run --multirun experiment=iu_xray memory=naive,cumulative,replay,ewc,lwf,gem,icarl,cope seed=0,1,2 \
    hydra.sweep.dir=$OUT/avalanche
