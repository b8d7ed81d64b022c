#!/usr/bin/env bash
# The runs behind experiments/iu_xray/pages/README.md (the first OCR run encodes the pages once: about an hour here).
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
OUT=outputs/multirun/iu_xray_pages
SUB="dataset.train_size=600 dataset.test_size=300"
# OCR route on the cached OCR features: every frozen-feature memory, 3 seeds
$PY -m neurocl.run experiment=iu_xray_pages $SUB memory=slda hydra.run.dir=outputs/runs/iu_pages_ocr_slda
$PY -m neurocl.run --multirun experiment=iu_xray_pages $SUB memory=prototypes,slda,ncm seed=0,1,2 hydra.sweep.dir=$OUT/ocr_text
# the text route on the same reports
$PY -m neurocl.run --multirun experiment=iu_xray $SUB memory=prototypes,slda,ncm seed=0,1,2 hydra.sweep.dir=$OUT/text
# the page pixels through EfficientNet-Lite0 at 224 px
$PY -m neurocl.run --multirun experiment=iu_xray_pages $SUB encoder=efficientnet_lite0 encoder.resolution=224 memory=prototypes,slda,ncm seed=0,1,2 hydra.sweep.dir=$OUT/pixels
$PY experiments/iu_xray/ocr_cer.py --pages 50
