"""Whole runs on the medical streams, on a tiny archive in the real IU X-ray format written here:
reports through MiniLM, the multi-label variant, and pages aligned with their reports by the projection."""

import json

import numpy as np
import pytest

from conftest import compose
from neurocl.errors import ConfigError
from neurocl.run import execute
from test_data_iu_xray import write_archive

FINDINGS = {  # 4 classes whose reports say different things, 10 reports each
    "normal": "The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.",
    "Cardiomegaly": "The heart is enlarged. Cardiac silhouette is increased in size.",
    "Opacity": "There is a patchy opacity in the right lower lobe, possibly pneumonia.",
    "Spine": "Degenerative changes of the thoracic spine with osteophytes.",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    reports = [(f"{text} Study {i}.", f"Impression {i}.", [term]) for term, text in FINDINGS.items() for i in range(10)]
    # both findings: dropped by the single-label protocol, two labels in the multi-label variant
    reports += [(f"{FINDINGS['Cardiomegaly']} {FINDINGS['Opacity']}", f"Both {i}.", ["Cardiomegaly", "Opacity/lung"])
                for i in range(6)]
    return write_archive(tmp_path_factory.mktemp("iu") / "NLMCXR_reports.tgz", reports)


def iu(archive, tmp_path, *overrides):
    return compose("experiment=iu_xray", f"dataset.path={archive}", "dataset.num_terms=4", "dataset.min_reports=5",
                   f"paths.cache_dir={tmp_path / 'cache'}", *overrides)


def test_reports_stream_through_minilm(archive, tmp_path):
    results = execute(iu(archive, tmp_path, "memory=slda"), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert np.array(saved["R"]).shape == (2, 2) and saved["metrics"]["A_last"] > 0.9  # the texts say their class
    assert results["feature_cache"] == {"hits": 0, "misses": 2}


def test_multi_label_run_reports_auroc_and_f1_matrices(archive, tmp_path):
    cfg = iu(archive, tmp_path, "dataset.labels=multi", "scenario=multi_label", "memory=ncm")
    results = execute(cfg, tmp_path / "out")
    labels = results["multi_label"]
    assert np.array(results["R"]).shape == (2, 2)  # Cardiomegaly, Opacity (16 reports each), Spine, normal
    assert np.array(labels["R_macro_f1"]).shape == (2, 2) and len(labels["per_label_auroc"]) == 4
    assert min(labels["per_label_auroc"]) > 0.9  # each finding's own words find it
    assert "conditions" not in results  # no single-label accuracy on multi-label data


def test_labels_and_scenario_must_agree_before_encoding(archive, tmp_path):
    for overrides in (["dataset.labels=multi"], ["scenario=multi_label"]):
        with pytest.raises(ConfigError, match="scenario=multi_label with multi-label data"):
            execute(iu(archive, tmp_path, *overrides), tmp_path / "out")
    assert not (tmp_path / "cache").exists()


def test_pages_aligned_with_their_reports_by_the_contrastive_projection(archive, tmp_path):
    cfg = compose("experiment=iu_xray_pages", f"dataset.path={archive}", "dataset.num_terms=4",
                  "dataset.min_reports=5", "dataset.page_size=[256,200]", "dataset.font_size=8",
                  "encoder=efficientnet_lite0", "encoder.resolution=32", "memory=ncm",
                  "projection=contrastive", "projection.projection_dim=16", "projection.fit.epochs=5",
                  "projection.fit.validation_fraction=0.3", f"paths.cache_dir={tmp_path / 'cache'}")
    results = execute(cfg, tmp_path / "out")
    assert results["projection"]["policy"] == "first_experience" and len(results["projection"]["fits"]) == 1
    assert results["feature_cache"]["misses"] == 3  # pages train and test, and the paired report texts
    assert results["memory_stats"]["memory_bytes"] == (16 * 4 + 4) * 8  # NCM over the 16-d projection


def test_a_pair_dataset_of_other_samples_is_refused(archive, tmp_path):
    cfg = compose("experiment=iu_xray_pages", f"dataset.path={archive}", "dataset.num_terms=4",
                  "dataset.min_reports=5", "dataset.page_size=[256,200]", "dataset.font_size=8",
                  "encoder=efficientnet_lite0", "encoder.resolution=32", "memory=ncm", "projection=contrastive",
                  "projection.pair_dataset.num_terms=3",
                  f"paths.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(ConfigError, match="sample ids differ"):
        execute(cfg, tmp_path / "out")


def test_two_submitit_tasks_train_the_projection_as_one_process_does(archive, tmp_path):
    """hydra.launcher.tasks_per_node=2 (submitit's local executor): one torch.distributed group, no torchrun;
    the head's training is shared and ends where one process ends; task 0 alone writes the run."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    args = ["experiment=iu_xray_pages", f"dataset.path={archive}", "dataset.num_terms=4", "dataset.min_reports=5",
            "dataset.page_size=[256,200]", "dataset.font_size=8", "encoder=efficientnet_lite0",
            "encoder.resolution=32", "memory=ncm", "projection=contrastive", "projection.projection_dim=16",
            "projection.fit.epochs=5", "projection.fit.validation_fraction=0.3", f"paths.cache_dir={tmp_path / 'c'}"]
    one = execute(compose(*args), tmp_path / "one")
    out = subprocess.run([sys.executable, "-m", "neurocl.run", "--multirun", "hydra/launcher=local",
                          "hydra.launcher.tasks_per_node=2", *args, f"hydra.sweep.dir={tmp_path / 'two'}"],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "two" / ".submitit").rglob("*_log.out"))
    assert "rank 0 of 2" in logs and "rank 1 of 2" in logs
    assert sorted(p.parent.name for p in (tmp_path / "two").rglob("results.json")) == ["0"]
    two = json.loads((tmp_path / "two" / "0" / "results.json").read_text())
    np.testing.assert_array_equal(two["R"], one["R"])
    for a, b in zip(one["projection"]["fits"][0]["history"], two["projection"]["fits"][0]["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4


def test_yes_no_questions_about_held_out_reports_are_answered_from_evidence(archive, tmp_path):
    results = execute(iu(archive, tmp_path, "qa=yesno"), tmp_path / "out")
    qa = results["qa"]
    assert set(qa["per_term"]) == {"normal", "Cardiomegaly", "Opacity", "Spine"}
    assert qa["accuracy"] > 0.9  # each finding's own words find it
    lines = [json.loads(line) for line in (tmp_path / "out" / "qa.jsonl").read_text().splitlines()]
    assert len(lines) == qa["questions"] and all(line["evidence"][0].startswith("CXR") for line in lines)
    assert {line["question"] for line in lines} >= {"Is there cardiomegaly?", "Is the study normal?"}
    with pytest.raises(ConfigError, match="single-label"):
        execute(iu(archive, tmp_path, "qa=yesno", "dataset.labels=multi", "scenario=multi_label"), tmp_path / "m")
