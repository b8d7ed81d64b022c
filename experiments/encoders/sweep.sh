#!/usr/bin/env bash
# Better frozen concepts: EfficientNet-Lite0/1/2 and input resolution, on a fixed 6,000/2,000-image subset of
# Split-FashionMNIST (encoding the full set at 96 px with Lite2 takes most of an hour on 2 cores). RanPAC is left
# out: its 5,000 x 5,000 eigendecompositions cost minutes per run whatever the subset.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=outputs/multirun/encoders
SUBSET="dataset.train_size=6000 dataset.test_size=2000"
for enc in "encoder=efficientnet_lite0 encoder.resolution=64" "encoder=efficientnet_lite0 encoder.resolution=96" \
           "encoder=efficientnet_lite1 encoder.resolution=96" "encoder=efficientnet_lite2 encoder.resolution=96"; do
  name=$(echo $enc | tr ' =' '__')
  $PY -m neurocl.run --multirun $SUBSET $enc memory=prototypes,ncm,slda seed=0 hydra.sweep.dir=$OUT/$name
done
