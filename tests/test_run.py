import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from conftest import CONF, ROOT, compose
from neurocl.errors import ConfigError, DataError
from neurocl.run import execute

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_preset_composes(preset):
    cfg = compose(f"experiment={preset}")
    for group in ("dataset", "scenario", "encoder", "memory", "neuron"):
        assert "_target_" in cfg[group], group
    assert cfg.logger and all("_target_" in node for node in cfg.logger.values())


def test_default_config_is_the_documented_protocol():
    cfg = compose()
    assert cfg.dataset._target_.endswith("FashionMNIST") and cfg.dataset.train_size is None
    assert cfg.encoder._target_.endswith("EfficientNetLite") and cfg.encoder.variant == "lite0" and cfg.encoder.resolution == 64
    assert cfg.memory._target_.endswith("PrototypeMemory") and cfg.scenario.classes_per_experience == 2
    instantiate(cfg.neuron)  # the neuron group builds real Norse parameters


MEMORIES = sorted(p.stem for p in (CONF / "memory").glob("*.yaml"))
FORGETTERS = {"naive", "ewc", "lwf"}  # class-incremental without stored samples: the last experience wins
# Digits has ~280 training samples per experience, not 12,000: small batches, a higher rate, fewer epochs.
SMALLER = {"ranpac": ["memory.projection_dim=256"], "icarl": ["memory.hidden=64"],
           "cope": ["memory.strategy.train_mb_size=32", "memory.strategy.alpha=0.5", "memory.hidden=64"]}
NETWORK = ["memory.strategy.train_epochs=4", "memory.strategy.train_mb_size=16", "memory.optimizer.lr=0.01"]
RERUN = {"prototypes", "ncm", "slda", "ranpac", "knn", "naive", "replay"}  # same seed, same R: checked on these


@pytest.mark.parametrize("memory", MEMORIES)
def test_end_to_end_on_digits(tmp_path, memory):
    overrides = ["experiment=digits_quick", f"memory={memory}", f"paths.cache_dir={tmp_path / 'cache'}"]
    avalanche = compose(*overrides).memory._target_.endswith("AvalancheMemory")
    cfg = compose(*overrides, *(NETWORK if avalanche and memory != "avalanche_slda" else []), *SMALLER.get(memory, []))
    results = execute(cfg, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    R = np.array(saved["R"])
    assert R.shape == (5, 5) and saved["metrics"]["A_last"] == pytest.approx(R[-1].mean())
    if not avalanche:  # Avalanche heads may answer unseen classes
        assert np.allclose(np.triu(R, 1), 0)  # unseen classes: an untrained memory abstains
    assert R.diagonal().mean() > (0.4 if memory == "cope" else 0.8)  # each experience is learnt ...
    assert saved["metrics"]["A_last"] > (0.15 if memory in FORGETTERS else 0.3)  # ... and kept, unless it forgets
    assert saved["config"]["memory"]["_target_"] == cfg.memory._target_
    assert len(saved["timings"]) == 5 and saved["memory_stats"]["memory_bytes"] > 0
    assert (tmp_path / "out" / "accuracy_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert results["feature_cache"] == {"hits": 0, "misses": 2}
    if memory in RERUN:
        again = execute(cfg, tmp_path / "out2")
        assert again["feature_cache"] == {"hits": 2, "misses": 0}
        assert np.array_equal(again["R"], results["R"])  # same seed, same matrix


def test_task_incremental_run(tmp_path):
    cfg = compose("experiment=digits_quick", "scenario=task_incremental", "memory=ncm", "cache.enabled=false")
    results = execute(cfg, tmp_path)
    assert results["metrics"]["A_last"] > 0.95  # choosing between two known classes is easy


def test_fashion_mnist_run_on_tiny_idx_files(tmp_path, fmnist_dir):
    cfg = compose(f"dataset.root={fmnist_dir}", "encoder=pixels", "memory=ncm", "cache.enabled=false")
    results = execute(cfg, tmp_path)
    assert results["metrics"]["A_last"] == 1.0  # the fixture's classes are separable


def test_bad_values_fail_before_anything_is_written(tmp_path, fmnist_dir):
    cases = [
        (["scenario.classes_per_experience=3"], ConfigError, "does not divide the 10 classes"),
        (["memory.similarity_threshold=1.5"], ConfigError, r"\[-1, 1\]"),
        (["dataset.train_size=-3"], ConfigError, "train_size=-3: must be above 0"),
        (["dataset.root=/nonexistent"], DataError, "dataset-fashion-mnist"),
    ]
    for overrides, error, message in cases:
        base = [f"dataset.root={fmnist_dir}"] if "dataset.root=/nonexistent" not in overrides else []
        cfg = compose(*base, "encoder=pixels", "cache.enabled=false", *overrides)
        with pytest.raises(error, match=message):
            execute(cfg, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_unknown_options_are_named():
    with pytest.raises(ConfigCompositionException, match="memory/nosuch"):
        compose("memory=nosuch")
    with pytest.raises(ConfigCompositionException, match="nosuchkey"):
        compose("memory.nosuchkey=1")


def test_command_line(tmp_path):
    env = {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache")}
    ok = subprocess.run([sys.executable, "-m", "neurocl.run", "experiment=digits_quick",
                         f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "A_last" in ok.stdout and (tmp_path / "run" / "results.json").exists()
    bad = subprocess.run([sys.executable, "-m", "neurocl.run", "memory=nosuch"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Could not find 'memory/nosuch'" in bad.stderr
    assert "Available options" in bad.stderr


def test_results_are_strict_json_and_writes_are_atomic(tmp_path):
    from neurocl.io import atomic_path, write_json

    write_json(tmp_path / "r.json", {"a": np.array([1.0, np.nan]), "b": float("inf")})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1.0, None], "b": None}
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads((tmp_path / "r.json").read_text())["a"] == [1.0, None]  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_spiking_run_reports_conditions_raster_energy_and_exports_nir(tmp_path):
    cfg = compose("experiment=digits_quick", "memory=prototypes_snn", "export_nir=true", "cache.enabled=false",
                  "conditions=corrupted")
    results = execute(cfg, tmp_path)
    conditions = results["conditions"]
    assert set(conditions) == {"clean", "gaussian_noise", "occlusion"}
    for readouts in conditions.values():
        assert set(readouts) == {"snn", "store"}
        assert {"accuracy", "ece", "aurc", "accuracy_at_0.8_coverage"} <= set(readouts["snn"])
        assert readouts["snn"]["spikes_per_query"] > 0
    assert conditions["clean"]["snn"]["accuracy"] == pytest.approx(results["metrics"]["A_last"], abs=0.02)
    assert conditions["gaussian_noise"]["snn"]["accuracy"] < conditions["clean"]["snn"]["accuracy"]
    assert "0.9 pJ" in results["memory_stats"]["energy"]["convention"]
    assert (tmp_path / "spike_raster.png").read_bytes()[:4] == b"\x89PNG"
    import nir

    graph = nir.read(tmp_path / "network.nir")
    assert graph.nodes["readout"].weight.shape == (10, results["memory_stats"]["concept_neurons"])


def test_nir_export_needs_a_spiking_memory(tmp_path):
    with pytest.raises(ConfigError, match="export_nir"):
        execute(compose("experiment=digits_quick", "memory=ncm", "export_nir=true", "cache.enabled=false"), tmp_path)


def test_a_local_config_sets_machine_paths_and_is_ignored_by_git():
    local = CONF / "local" / "default.yaml"
    if local.exists():
        pytest.skip("this machine has its own conf/local/default.yaml")
    before = compose().paths.cache_dir
    try:
        local.write_text("# @package _global_\npaths:\n  cache_dir: /scratch/cache\n")
        assert compose().paths.cache_dir == "/scratch/cache" and before != "/scratch/cache"
        assert compose("paths.cache_dir=/x").paths.cache_dir == "/x"  # the command line still wins
        ignored = subprocess.run(["git", "check-ignore", "-q", str(local)], cwd=ROOT)
        assert ignored.returncode == 0
    finally:
        local.unlink()


def test_debug_runs_on_a_small_subset(tmp_path):
    cfg = compose("experiment=digits_quick", "debug=default", "subset.test=100", f"paths.cache_dir={tmp_path}")
    results = execute(cfg, tmp_path / "run")
    assert sum(e["train_samples"] for e in results["experiences"]) == 500
    assert sum(e["test_samples"] for e in results["experiences"]) == 100
    full = compose("experiment=digits_quick")
    assert "subset" not in full  # positive control: without debug, no subset key and the whole dataset
