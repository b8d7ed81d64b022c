"""The answer composer: abstention policies and answer metrics by hand, typed evidence from a real store, and a
whole run's answers on every test condition."""

import json

import numpy as np
import pytest
import torch

from conftest import compose
from neurocl.composer import (Composer, KeepMemoryAnswers, LabelSpikes, Margin, ScoreThreshold, TargetCoverage,
                              Unknown, answer_metrics)
from neurocl.errors import ConfigError
from neurocl.memory import PrototypeMemory
from neurocl.memory.base import prediction_from_scores
from neurocl.run import execute
from test_memory import clusters


def prediction(scores, **evidence):
    return prediction_from_scores(torch.tensor(scores, dtype=torch.float32),
                                  {k: torch.tensor(v) for k, v in evidence.items()})


NEG = float("-inf")
# query 0: sure of class 0; query 1: torn between 0 and 1; query 2: the memory can answer nothing
SCORES = [[4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [NEG, NEG, NEG]]


def test_policies_by_hand():
    p = prediction(SCORES, confidence=[0.9, 0.45, 0.0], winner_spikes=[5, 1, 0])
    decide = lambda policy: Composer(policy).decide(p)[1].tolist()
    assert decide(KeepMemoryAnswers()) == [False, False, True]  # only the memory's own abstention
    assert decide(ScoreThreshold(0.5)) == [False, True, True]
    assert decide(Margin(0.1)) == [False, True, True]  # the softmax shares of query 1 tie
    assert decide(LabelSpikes(2)) == [False, True, True]
    assert decide(LabelSpikes(0)) == [False, False, True]  # control: no spike minimum, no extra abstention
    coverage = TargetCoverage(0.5)
    coverage.fit(prediction([[1.0, 0.0]] * 4, confidence=[0.2, 0.4, 0.6, 0.8]))
    assert coverage.threshold == pytest.approx(0.5)  # half of the calibration queries are above it
    assert decide(coverage) == [False, True, True]
    with pytest.raises(ConfigError, match="reports no label spikes"):
        Composer(LabelSpikes(1)).decide(prediction(SCORES))


def test_unknown_policy_abstains_on_classes_never_learned():
    x, y = clusters(num_classes=4, per_class=60, dim=8, spread=0.15, seed=4)
    seen = y < 2
    train, held = torch.arange(len(y))[seen][::2], torch.arange(len(y))[seen][1::2]
    memory = PrototypeMemory(8, 4, readout="vote", backend="exact")
    memory.observe(x[train], y[train], ids=train)
    composer = Composer(Unknown(retain=0.95))
    composer.fit(memory.predict(x[held[::2]]))  # calibrated on held-out training queries of the classes learned
    test = held[1::2]
    answered_seen = 1 - composer.decide(memory.predict(x[test]))[1].float().mean()
    abstained_unseen = composer.decide(memory.predict(x[~seen]))[1].float().mean()
    assert answered_seen > 0.85 and abstained_unseen > 0.9
    # control: without the open-set policy every unseen query gets a (wrong) answer
    assert not Composer(KeepMemoryAnswers()).decide(memory.predict(x[~seen]))[1].any()
    p = prediction([[1.0, 0.0]] * 3, unknown=[0.1, 2.0, 5.0])
    policy = Unknown(retain=0.5)
    policy.fit(prediction([[1.0, 0.0]] * 3, unknown=[1.0, 3.0, 4.0]))
    assert policy.threshold == 3.0 and policy.abstain(p).tolist() == [False, False, True]


def test_answer_metrics_by_hand():
    p = prediction(SCORES, confidence=[0.9, 0.45, 0.0])
    out = answer_metrics(Composer(ScoreThreshold(0.5)), p, torch.tensor([0, 1, 2]), 3, k=2)
    assert out["coverage"] == pytest.approx(1 / 3) and out["selective_accuracy"] == 1.0
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["top_2_accuracy"] == pytest.approx(2 / 3)  # query 1's class 1 is 2nd; query 2 has no answer
    assert out["confusion_matrix"].tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert out["macro_f1"] == pytest.approx(1 / 3)  # class 0: F1 1; classes 1 and 2: never answered


def test_answers_carry_evidence_resolved_to_sources():
    x, y = clusters(num_classes=3, per_class=20, dim=8, spread=0.05)
    memory = PrototypeMemory(8, 3, readout="vote", similarity_threshold=0.99, backend="exact")
    memory.observe(x, y, ids=torch.arange(len(y)))
    sources = [f"sample-{i}" for i in range(len(y))]
    queries = torch.cat([x[:2], torch.zeros(1, 8) + 5.0])  # two known samples and one far from everything
    answers = Composer(ScoreThreshold(0.5)).compose(memory, memory.predict(queries), sources)
    first = answers[0]
    assert first.label == 0 and not first.abstained and first.reason is None
    assert first.top_k[0] == 0 and len(first.evidence.prototype_ids) == len(first.evidence.similarities)
    assert list(first.evidence.similarities) == sorted(first.evidence.similarities, reverse=True)
    assert first.evidence.sources and all(int(s.split("-")[1]) < 20 for s in first.evidence.sources)  # class 0
    assert sum(a.abstained for a in answers) <= 1 and all(
        a.reason == "confidence below 0.5" for a in answers if a.abstained)


def test_a_run_answers_every_test_condition(tmp_path):
    cfg = compose("experiment=digits_quick", "composer=threshold", "composer.policy.threshold=0.9",
                  "conditions=corrupted", f"paths.cache_dir={tmp_path / 'cache'}")
    results = execute(cfg, tmp_path / "run")
    answers = results["answers"]
    assert set(answers) == {"clean", "gaussian_noise", "occlusion"}
    clean, occluded = answers["clean"], answers["occlusion"]
    assert clean["coverage"] > occluded["coverage"]  # less sure of occluded digits: abstains more
    assert clean["selective_accuracy"] >= clean["accuracy"]
    lines = (tmp_path / "run" / "answers-occlusion.jsonl").read_text().splitlines()
    assert len(lines) == 450 and {"label", "evidence", "abstained", "reason", "true_label"} <= set(json.loads(lines[0]))
    assert results["answer_examples"][0]["evidence"]["sources"][0].startswith("sklearn-digits#")
    assert (tmp_path / "run" / "risk_coverage.png").exists() and (tmp_path / "run" / "confusion_matrix.png").exists()
    assert np.array(clean["confusion_matrix"]).shape == (10, 11)


def test_coverage_calibration_needs_held_out_training_data(tmp_path):
    with pytest.raises(ConfigError, match="validation_fraction=0.2"):
        execute(compose("experiment=digits_quick", "composer=coverage", f"paths.cache_dir={tmp_path}"), tmp_path / "r")
    assert not list(tmp_path.glob("**/*.npy"))  # refused before anything was encoded
    results = execute(compose("experiment=digits_quick", "composer=coverage", "validation_fraction=0.2",
                              f"paths.cache_dir={tmp_path}"), tmp_path / "run")
    assert 0.75 < results["answers"]["clean"]["coverage"] < 1.0  # near the 0.9 asked for, on unseen queries


# --- knowing what it has not learned -----------------------------------------------------------------------------

def test_open_set_rows_by_hand():
    from neurocl.driver import open_set_rows

    score = lambda *values: torch.tensor(values)
    # unknown scores; experiences 0 and 1 seen after t = 1; experience 2 unseen, mostly scored more unknown
    results = [(1.0, None, score(0.1, 0.2)), (1.0, None, score(0.3, 0.4)), (0.0, None, score(0.35, 0.9))]
    auroc, abstained = open_set_rows(1, results)
    assert np.isnan(auroc[:2]).all() and np.isnan(abstained[:2]).all()
    # unseen {0.35, 0.9} against seen {0.1, 0.2, 0.3, 0.4}: 0.9 above all 4, 0.35 above 3
    assert auroc[2] == pytest.approx((4 + 3) / 8)
    # keeping 95% of the seen answers: threshold at their 95th percentile, 0.385: 0.9 is abstained on, 0.35 not
    assert abstained[2] == pytest.approx(0.5)
    auroc0, _ = open_set_rows(0, results)
    assert np.isnan(auroc0[0]) and not np.isnan(auroc0[1:]).any()


def test_every_run_measures_the_open_set(tmp_path):
    results = execute(compose("experiment=digits_quick", "memory=ncm", f"paths.cache_dir={tmp_path}"), tmp_path / "r")
    auroc = np.array(results["open_set"]["auroc"], dtype=float)
    assert auroc.shape == (5, 5) and np.isnan(auroc[np.tril_indices(5)]).all()
    assert not np.isnan(auroc[np.triu_indices(5, 1)]).any()
    assert results["metrics"]["open_set_auroc"] == pytest.approx(np.nanmean(auroc))
    task_aware = execute(compose("experiment=digits_quick", "memory=ncm", "scenario=task_incremental",
                                 f"paths.cache_dir={tmp_path}"), tmp_path / "t")
    assert "open_set" not in task_aware  # control: a task-aware answer never reaches an unseen class


def test_yes_no_questions_are_balanced_per_term():
    from neurocl.composer.yesno import YesNoQuestions, phrase

    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    questions = YesNoQuestions(seed=0).questions(labels, ["normal", "Cardiomegaly", "Opacity"])
    for term, positives in ((0, 3), (1, 1), (2, 2)):
        mine = [q for q in questions if q["term"] == term]
        assert sum(q["gold"] == "yes" for q in mine) == positives == sum(q["gold"] == "no" for q in mine)
        assert all((labels[q["row"]] == term) == (q["gold"] == "yes") for q in mine)
    assert phrase("Cardiomegaly") == "Is there cardiomegaly?" and phrase("normal") == "Is the study normal?"
