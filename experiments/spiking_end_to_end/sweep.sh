#!/usr/bin/env bash
# The runs behind experiments/spiking_end_to_end/README.md: the end-to-end spiking memory, float32 and int8 weights,
# 3 seeds, on every stream of experiments/all_streams and the IU X-ray reports; then the tables and the second runtime.
#   bash experiments/spiking_end_to_end/sweep.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/spiking_end_to_end
declare -A STREAMS=([digits_eff]="dataset=digits encoder=efficientnet_lite0" [digits_px]="dataset=digits encoder=pixels"
                    [fmnist_px]="encoder=pixels" [fmnist_eff]="encoder=efficientnet_lite0" [iu_reports]="experiment=iu_xray")
for s in digits_eff digits_px fmnist_px fmnist_eff iu_reports; do
  $PY -m neurocl.run --multirun ${STREAMS[$s]} memory=prototypes_snn memory.weights=float32,int8 seed=0,1,2 \
      hydra.sweep.dir=$OUT/$s
done
$PY experiments/spiking_end_to_end/tables.py $OUT > experiments/spiking_end_to_end/tables.md
# the exported whole memory, read from its file and run by NIR's equations (neurocl/snn/nir_graph.py) and, where the
# graph is feed-forward (class layers), by snnTorch (its fixed 0.1 ms step: memory.dt=0.0001)
HERE=experiments/spiking_end_to_end
quiet() { grep -v '^Loaded pretrained'; }  # the EfficientNet package prints it on stdout
$PY $HERE/second_runtime.py dataset=digits encoder=efficientnet_lite0 memory.dt=0.0001 | quiet > $HERE/second_runtime.md
$PY $HERE/second_runtime.py experiment=iu_xray memory.dt=0.0001 | quiet >> $HERE/second_runtime.md
$PY $HERE/second_runtime.py encoder=efficientnet_lite0 --queries=2000 | quiet >> $HERE/second_runtime.md  # kernel ridge: 18 min
# kernel ridge's graph (every neuron steps 1,610 times): digits whole, Fashion-MNIST on its first 500 (pixels) or
# 2,000 (EfficientNet, above) test queries
$PY $HERE/second_runtime.py dataset=digits encoder=pixels | quiet >> $HERE/second_runtime.md
$PY $HERE/second_runtime.py encoder=pixels --queries=500 | quiet >> $HERE/second_runtime.md
# the label chain's length, on training queries; kernel ridge read from spike times, three ramps, plain and compensated int8
$PY $HERE/label_stages.py encoder=pixels | quiet > $HERE/label_stages.md
$PY $HERE/label_stages.py encoder=efficientnet_lite0 | quiet >> $HERE/label_stages.md
for s in "dataset=digits encoder=pixels" "encoder=pixels" "encoder=efficientnet_lite0"; do
  $PY $HERE/kernel_ridge_spiking.py $s | quiet
done > $HERE/kernel_ridge_spiking.md
# what holding out a fifth of each experience (to choose the readout) costs the vote
$PY $HERE/holdout_cost.py encoder=efficientnet_lite0 | quiet > $HERE/holdout_cost.md
