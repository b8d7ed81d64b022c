#!/usr/bin/env bash
# The sweeps behind experiments/prototype_store/README.md (2 cores: about 45 minutes with cached features).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/prototype_store
run() { name=$1; shift; $PY -m neurocl.run --multirun "$@" hydra.sweep.dir=$OUT/$name; }
run main seed=0,1,2
run budget memory.max_prototypes=200,2000
run conditioning memory.conditioning=none,center memory.projection_dim=null
run full_whitening memory.projection_dim=null
run over_budget memory.over_budget=prune
run ema memory.similarity_threshold=0.5
run merge memory.merge_threshold=0.9
run split memory.split_threshold=0.3
run purity memory.purity_gate=false
run exact memory.backend=exact
$PY -m neurocl.analyze $OUT/* --out experiments/prototype_store
