"""Hyperparameter search: the objective is A_last on validation samples carved from the training data."""

import json
import os
import subprocess
import sys

import yaml

from conftest import ROOT, compose
from neurocl import checkpoint
from neurocl.run import execute


def test_validation_is_carved_from_the_training_data(tmp_path, fmnist_dir):
    cfg = compose(f"dataset.root={fmnist_dir}", "encoder=pixels", "memory=ncm", "validation_fraction=0.25",
                  f"paths.cache_dir={tmp_path / 'cache'}")
    results = execute(cfg, tmp_path / "run")
    R_validation = results["validation"]["R"]
    assert len(R_validation) == len(results["R"]) == 5 and results["validation"]["metrics"]["A_last"] > 0.5
    kept = checkpoint.load(tmp_path / "run" / checkpoint.FILENAME)["data"]["train_ids"]
    assert len(kept) == 60  # 80 training images, a quarter held out, none of them a test image
    assert all(i.startswith("train-images") for i in kept)
    plain = execute(compose(f"dataset.root={fmnist_dir}", "encoder=pixels", "memory=ncm",
                            f"paths.cache_dir={tmp_path / 'cache'}"), tmp_path / "plain")
    assert "validation" not in plain  # positive control: no validation set, no validation R


def test_an_optuna_search_optimises_validation_accuracy(tmp_path, fmnist_dir):
    env = {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "neurocl.run", "hparams_search=prototypes_optuna",
                          f"dataset.root={fmnist_dir}", "encoder=pixels", "hydra.sweeper.n_trials=3",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    trials = [json.loads((tmp_path / "sweep" / str(n) / "results.json").read_text()) for n in range(3)]
    validation = [t["validation"]["metrics"]["A_last"] for t in trials]
    assert best["best_value"] == max(validation)
    assert set(best["best_params"]) == {"memory.top_k", "memory.temperature", "memory.similarity_threshold"}
    assert "| A_last | A_last validation |" in (tmp_path / "sweep" / "summary.md").read_text()  # side by side
