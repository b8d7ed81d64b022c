"""Multi-label streams: per-label AUROC and F1 (hand-computed), the scenario and the driver."""

import numpy as np
import pytest
import torch

from neurocl import metrics
from neurocl.driver import Features, run_multilabel_stream
from neurocl.errors import ConfigError
from neurocl.loggers import ConsoleLogger
from neurocl.memory import NCM
from neurocl.scenarios import ClassIncremental, MultiLabelIncremental


def test_auroc_by_hand():
    # positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    assert metrics.auroc([0.8, 0.6, 0.4, 0.2], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert metrics.auroc([0.5, 0.5, 0.5], [1, 0, 0]) == pytest.approx(0.5)  # ties count one half
    assert metrics.auroc([0.9, 0.1], [1, 0]) == 1.0 and metrics.auroc([0.1, 0.9], [1, 0]) == 0.0
    assert np.isnan(metrics.auroc([0.1, 0.9], [1, 1]))  # one class only
    # an unknown target (-1, an uncertain label left as unknown) is left out, not counted as positive
    assert metrics.auroc([0.8, 0.6, 0.4, 0.2, 0.9], [1, 0, 1, 0, -1]) == pytest.approx(0.75)
    assert metrics.auroc([0.8, 0.6, 0.4, 0.2, 0.9], [1, 0, 1, 0, 1]) != pytest.approx(0.75)
    rng = np.random.default_rng(0)  # against the pairwise definition
    s, y = rng.integers(0, 5, 40).astype(float), rng.integers(0, 2, 40)
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]]
    assert metrics.auroc(s, y) == pytest.approx(np.mean(pairs))


def test_f1_and_the_threshold_chosen_on_training_scores():
    assert metrics.f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)  # tp 1, fp 1, fn 1
    assert np.isnan(metrics.f1([0, 0], [0, 0]))
    assert metrics.f1([1, 1, 0, 0, 1], [1, 0, 1, 0, -1]) == pytest.approx(0.5)
    # scores 0.9(+) 0.8(-) 0.7(+) 0.1(-): thresholds 0.9 -> F1 2/3, 0.7 -> 0.8, 0.1 -> 2/3
    assert metrics.best_threshold([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(0.7)
    # a threshold cannot split a tie: 0.5 holds a positive and a negative
    assert metrics.best_threshold([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.5)
    assert metrics.best_threshold([0.3, 0.2], [0, 0]) == np.inf


def multilabel_features(n=240, labels=4, dim=16, seed=0):
    """Train and test halves; each label adds its own (orthogonal) direction to the features."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, labels, generator=g) < 0.35).long()
    y[y.sum(1) == 0, 0] = 1
    directions = torch.linalg.qr(torch.randn(dim, labels, generator=g))[0].T * 2
    x = y.float() @ directions + 0.5 * torch.randn(n, dim, generator=g)
    x = torch.nn.functional.normalize(x, dim=1)
    return Features(x[: n // 2], y[: n // 2]), Features(x[n // 2:], y[n // 2:])


def test_multilabel_stream_learns_each_label_with_partial_annotation():
    train, test = multilabel_features()
    stream = MultiLabelIncremental(labels_per_experience=2).build(train.x, train.y, test.x, test.y, 4)
    assert [e.classes for e in stream.experiences] == [[0, 1], [2, 3]] and stream.multi_label
    assert torch.equal(stream.experiences[1].train_idx, (train.y[:, 2:] == 1).any(1).nonzero().flatten())
    results = run_multilabel_stream(stream, NCM(dim=16, num_classes=4), train, test, ConsoleLogger())
    R = results["R"]
    assert R.shape == (2, 2) and R[1].min() > 0.8  # every label learned and kept (chance: 0.5)
    assert results["untrained_accuracy"][1] == pytest.approx(0.5)  # an unseen label: all scores tied
    assert R[0, 1] == pytest.approx(0.5)  # positive control: labels 2, 3 unknown after experience 0
    f1 = results["multi_label"]["R_macro_f1"]
    assert f1[1].min() > 0.5 and f1[0, 1] == 0  # unseen labels are never predicted
    assert np.isfinite(results["multi_label"]["thresholds"]).all()


def test_single_and_multi_label_scenarios_refuse_the_other_kind_of_labels():
    x = torch.randn(6, 4)
    with pytest.raises(ConfigError, match="scenario=multi_label"):
        ClassIncremental().build(x, torch.ones(6, 2).long(), x, torch.ones(6, 2).long(), 2)
    with pytest.raises(ConfigError, match="labels=multi"):
        MultiLabelIncremental().build(x, torch.arange(6) % 2, x, torch.arange(6) % 2, 2)
