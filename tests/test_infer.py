"""neurocl.infer: a trained memory answers new images and texts from a run's checkpoint, with its evidence."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, compose
from neurocl import evaluate, infer
from neurocl.errors import ConfigError, DataError
from neurocl.run import execute


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished digits run (raw pixels, the default memory) and 12 of its test images as PNG files."""
    from neurocl.data.digits import Digits

    root = tmp_path_factory.mktemp("digits")
    cfg = compose("experiment=digits_quick", f"paths.cache_dir={root / 'cache'}")
    execute(cfg, root / "run")
    test = Digits().load().test
    images = root / "images"
    images.mkdir()
    labels = {}
    for i in range(12):
        name = f"test{i}.png"
        Image.fromarray((test.images[i, 0].numpy() * 255).round().astype(np.uint8)).save(images / name)
        labels[str(images / name)] = int(test.labels[i])
    return root, labels


def test_a_folder_of_images_is_answered_with_evidence(digits_run, tmp_path, capsys):
    root, labels = digits_run
    answers = infer.main([f"checkpoint={root / 'run'}", f"input={root / 'images'}", f"output={tmp_path / 'p.jsonl'}"])
    assert [a["input"] for a in answers] == sorted(labels)
    right = np.mean([a["label"] == str(labels[a["input"]]) for a in answers])
    assert right >= 0.9, answers
    assert all(a["evidence"] and all(e.startswith("sklearn-digits#") for e in a["evidence"]) for a in answers)
    assert all(len(a["top"]) == 3 and a["top"][0] == a["label"] and not a["abstained"] for a in answers)
    written = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert written == answers
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "input,label,confidence,abstained,reason,top,evidence"
    assert "evidence: sklearn-digits#" in capsys.readouterr().out


def test_without_the_trained_state_the_answers_fall_apart(digits_run, monkeypatch):
    """Positive control: the same inputs through an untrained memory are not answered."""
    root, labels = digits_run
    monkeypatch.setattr(type(infer.load_trained(root / "run")[3]), "load_state_dict", lambda self, state: None)
    answers = infer.main([f"checkpoint={root / 'run'}", f"input={root / 'images'}"])
    assert all(a["abstained"] and a["label"] is None and a["reason"] == "the memory can answer no class"
               for a in answers)


def test_bad_inputs_are_named(digits_run, tmp_path):
    root, _ = digits_run
    (tmp_path / "notes.xyz").write_text("?")
    with pytest.raises(DataError, match=r"notes.xyz: a .xyz file cannot be answered"):
        infer.main([f"checkpoint={root / 'run'}", f"input={tmp_path / 'notes.xyz'}"])
    with pytest.raises(DataError, match="not a file or folder"):
        infer.main([f"checkpoint={root / 'run'}", "input=a text, to a memory of images"])
    with pytest.raises(DataError, match="no checkpoint"):
        infer.main([f"checkpoint={tmp_path}", f"input={root / 'images'}"])
    with pytest.raises(ConfigError, match="inptu"):
        infer.main([f"checkpoint={root / 'run'}", "inptu=x"])
    with pytest.raises(ConfigError, match="batch_size"):
        infer.main([f"checkpoint={root / 'run'}", f"input={root / 'images'}", "batch_size=0"])


def test_a_file_of_report_texts_is_answered_from_the_command_line(tmp_path):
    """IU X-ray reports with MiniLM (a small stratified subset), then a file of texts and a literal text."""
    env = {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "neurocl.run", "experiment=iu_xray", "dataset.train_size=300",
                          "dataset.test_size=100", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    texts = tmp_path / "reports.txt"
    texts.write_text("The heart is enlarged. Cardiomegaly.\n\nNo acute cardiopulmonary abnormality. Normal chest.\n")
    answers = infer.main([f"checkpoint={tmp_path / 'run'}", f"input={texts}"])
    assert [a["input"] for a in answers] == [f"{texts}:1", f"{texts}:3"]
    assert answers[0]["label"] == "Cardiomegaly" and answers[1]["label"] == "normal", answers
    assert all(a["evidence"] and a["evidence"][0].startswith("CXR") for a in answers)
    out = subprocess.run([sys.executable, "-m", "neurocl.infer", f"checkpoint={tmp_path / 'run'}",
                          "input=Heart size is enlarged, cardiomegaly."], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("input: Cardiomegaly"), out.stdout + out.stderr[-1500:]


def test_evaluate_scores_the_trained_memory_on_the_run_test_set_and_on_corrupted_copies(digits_run, tmp_path):
    root, _ = digits_run
    run = json.loads((root / "run" / "results.json").read_text())
    result = evaluate.evaluate([f"checkpoint={root / 'run'}", "conditions=corrupted", f"output={tmp_path / 'e.json'}"])
    assert result["accuracy"] == run["conditions"]["clean"]["memory"]["accuracy"]  # the same memory, restored
    assert result["conditions"]["occlusion"]["memory"]["accuracy"] < result["accuracy"] - 0.1
    assert len(result["per_experience_accuracy"]) == 5
    assert json.loads((tmp_path / "e.json").read_text())["accuracy"] == result["accuracy"]
    with pytest.raises(ConfigError, match="changes only the test data"):
        evaluate.evaluate([f"checkpoint={root / 'run'}", "memory.top_k=3"])
