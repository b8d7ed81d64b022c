"""The frozen-feature baselines against their textbook definitions."""

import numpy as np
import pytest
import torch

from neurocl.errors import ConfigError
from neurocl.memory import KNN, RanPAC, StreamingLDA
from test_memory import clusters


def test_slda_is_lda_with_the_pooled_within_class_covariance_in_any_batching():
    x, y = clusters(num_classes=3, per_class=40, dim=8, spread=0.3)
    one_shot, streamed = StreamingLDA(8, 3, shrinkage=0.1), StreamingLDA(8, 3, shrinkage=0.1)
    one_shot.observe(x, y)
    for i in range(0, len(y), 7):
        streamed.observe(x[i:i + 7], y[i:i + 7])
    xd = x.double()
    means = torch.stack([xd[y == c].mean(0) for c in range(3)])
    sigma = (xd - means[y]).T @ (xd - means[y]) / len(y)
    precision = torch.linalg.inv(0.9 * sigma + 0.1 * torch.eye(8, dtype=torch.float64))
    expected = xd @ precision @ means.T - 0.5 * ((means @ precision) * means).sum(1)
    assert torch.allclose(one_shot.predict(x).scores.double(), expected, atol=1e-3)
    assert torch.allclose(streamed.predict(x).scores, one_shot.predict(x).scores, atol=1e-4)


def test_knn_votes_like_a_brute_force_majority():
    x, y = clusters(num_classes=4, per_class=25, dim=6, spread=0.6, seed=1)
    queries = clusters(num_classes=4, per_class=10, dim=6, spread=0.6, seed=2)[0]
    memory = KNN(6, 4, k=5, chunk_size=16)  # several chunks: the running top-k must merge them
    memory.observe(x[:60], y[:60])
    memory.observe(x[60:], y[60:])
    xn, qn = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(queries, dim=1)
    neighbours = (qn @ xn.T).topk(5, dim=1).indices
    votes = torch.stack([torch.bincount(y[n], minlength=4) for n in neighbours])
    prediction = memory.predict(queries)
    assert (votes.gather(1, prediction.labels[:, None]).squeeze(1) == votes.max(1).values).all()
    assert torch.equal(prediction.evidence["neighbour_ids"].sort(1).values, neighbours.sort(1).values)
    assert memory.stats() == {"stored_samples": 100, "memory_bytes": 100 * 6 * 4 + 2 * 100 * 8}


def test_knn_evidence_is_the_nearest_training_rows_of_the_answered_class():
    x, y = clusters(num_classes=3, per_class=20, dim=5, spread=0.5, seed=3)
    rows = torch.arange(1000, 1060)  # the driver's training-row ids, not positions in the memory
    memory = KNN(5, 3, k=7)
    memory.observe(x[:30], y[:30], ids=rows[:30])
    memory.observe(x[30:], y[30:], ids=rows[30:])
    query = x[[4, 33, 50]] + 0.01
    prediction = memory.predict(query)
    evidence = memory.evidence_rows(prediction, per_answer=3)
    for q, label, got in zip(query, prediction.labels.tolist(), evidence):
        cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(q, dim=0)
        expected = [1000 + int(i) for i in cos.argsort(descending=True) if y[i] == label][:3]
        assert got == expected
    other = (prediction.labels + 1) % 3  # asked for another class: rows of that class only (control)
    for label, got in zip(other.tolist(), memory.evidence_rows(prediction, 3, labels=other)):
        assert all(int(y[r - 1000]) == label for r in got)
    restored = KNN(5, 3, k=7)
    restored.load_state_dict(memory.state_dict())
    assert restored.evidence_rows(restored.predict(query), 3) == evidence


def test_ranpac_chooses_its_ridge_on_held_out_data_and_never_forgets():
    x, y = clusters(num_classes=4, per_class=50, dim=16, spread=0.2)
    memory = RanPAC(16, 4, projection_dim=256, ridge_grid=[1e-3, 1e3, 1e9], seed=0)
    memory.observe(x[y < 2], y[y < 2])
    memory.end_experience()
    first = memory.predict(x[y < 2]).labels
    assert memory.ridge in (1e-3, 1e3, 1e9) and not memory.held_out  # held-out fifth folded in after the choice
    memory.observe(x[y >= 2], y[y >= 2], 1)
    memory.end_experience()
    prediction = memory.predict(x)
    assert (prediction.labels == y).float().mean() > 0.95
    # Gram and targets are sums: fed everything at once, the readout is the same.
    again = RanPAC(16, 4, projection_dim=256, ridge_grid=[memory.ridge], seed=0)
    again.observe(x, y)
    again.end_experience()
    assert torch.allclose(again.predict(x).scores, prediction.scores, atol=1e-2)
    assert (first == y[y < 2]).all()


@pytest.mark.parametrize("make,key", [(lambda: StreamingLDA(4, 2, shrinkage=0), "shrinkage"),
                                      (lambda: KNN(4, 2, k=0), "k"),
                                      (lambda: KNN(4, 2, precision="int8"), "precision"),
                                      (lambda: RanPAC(4, 2, projection_dim=0), "projection_dim"),
                                      (lambda: RanPAC(4, 2, ridge_grid=[-1.0]), "ridge_grid"),
                                      (lambda: RanPAC(4, 2, holdout_fraction=1.0), "holdout_fraction")])
def test_baseline_config_is_validated(make, key):
    with pytest.raises(ConfigError, match=f"memory.{key}"):
        make()
