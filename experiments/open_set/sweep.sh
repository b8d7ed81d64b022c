#!/usr/bin/env bash
# The runs behind experiments/open_set/README.md: every memory on the default stream (Split-FashionMNIST,
# EfficientNet-Lite0 features), 3 seeds. After each experience t < T the driver scores the test samples of
# seen classes against those of classes not yet seen (results.json "open_set"; summary open_set_auroc).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/open_set
# memory=avalanche_slda is left out, as in experiments/split_fashion_mnist: its per-sample updates take
# about 13 minutes per experience here.
$PY -m neurocl.run --multirun memory=ncm,slda,knn,ranpac,naive,replay,ewc,lwf,gem,cumulative,icarl,cope \
    seed=0,1,2 hydra.sweep.dir=$OUT/baselines
$PY -m neurocl.run --multirun memory=prototypes,prototypes_snn seed=0,1,2 hydra.sweep.dir=$OUT/ours
$PY -m neurocl.analyze $OUT/* --out experiments/open_set
