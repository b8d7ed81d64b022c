#!/usr/bin/env bash
# The spiking memory's ablation: neuron x reward modulation x T x prototype budget x 3 seeds (72 runs),
# every run also tested on the corrupted test sets (conditions=corrupted) with both readouts.
# Two sweeps in parallel, one thread each (2 cores here); then the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/snn_ablation
GRID="memory=prototypes_snn memory.network=topk_currents memory.backend=exact memory.plastic_neurons=all conditions=corrupted neuron=lif,alif,plif memory.reward_modulation=true,false memory.num_timesteps=5,20 seed=0,1,2"
# NCM on the same conditions (and the corrupted test sets encoded once, before the sweeps share them)
$PY -m neurocl.run --multirun memory=ncm conditions=corrupted hydra.sweep.dir=$OUT/ncm
$PY -m neurocl.run --multirun $GRID memory.max_prototypes=5000 hydra.sweep.dir=$OUT/budget5000 &
$PY -m neurocl.run --multirun $GRID memory.max_prototypes=200 hydra.sweep.dir=$OUT/budget200 &
wait
# Consolidation: only concept neurons founded in the current experience learn (the fix for the interference above)
for budget in 200 5000; do
  $PY -m neurocl.run --multirun memory=prototypes_snn memory.network=topk_currents memory.backend=exact conditions=corrupted neuron=lif memory.reward_modulation=true memory.num_timesteps=20 memory.plastic_neurons=new seed=0,1,2 memory.max_prototypes=$budget hydra.sweep.dir=$OUT/consolidated$budget &
done
wait
# The memory exactly as configured (hnswlib backend, lif, T=20, reward on), for the bar
$PY -m neurocl.run --multirun memory=prototypes_snn memory.network=topk_currents seed=0,1,2 hydra.sweep.dir=outputs/multirun/snn_default
$PY -m neurocl.analyze $OUT/* outputs/multirun/snn_default --out experiments/snn_ablation
