import warnings
from functools import partial

import numpy as np
import pytest
import torch

from neurocl.driver import predict
from neurocl.errors import ConfigError, DataError
from neurocl.memory import KNN, NCM, PrototypeMemory, RanPAC, StreamingLDA

SmallRanPAC = partial(RanPAC, projection_dim=64)
BASELINES = [NCM, StreamingLDA, SmallRanPAC, KNN]


def clusters(num_classes=4, per_class=30, dim=16, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


@pytest.mark.parametrize("make", [lambda: NCM(16, 4), lambda: PrototypeMemory(16, 4, similarity_threshold=0.9),
                                  lambda: PrototypeMemory(16, 4, conditioning="none", backend="exact"),
                                  lambda: PrototypeMemory(16, 4, readout="auto", backend="exact"),
                                  lambda: PrototypeMemory(16, 4, readout="kernel_ridge", backend="exact"),
                                  lambda: PrototypeMemory(16, 4, readout="kernel_ridge", kernel_space="conditioned",
                                                          projection_dim=8, backend="exact"),
                                  lambda: StreamingLDA(16, 4), lambda: SmallRanPAC(16, 4), lambda: KNN(16, 4, k=3)])
def test_learns_separable_classes_and_abstains_before_training(make):
    memory = make()
    x, y = clusters()
    before = memory.predict(x[:5])
    assert before.abstained.all() and (before.labels == -1).all()
    memory.observe(x[y < 2], y[y < 2], 0)
    memory.end_experience()  # as the driver does after an experience's last batch
    prediction = memory.predict(x)
    assert (prediction.labels[y < 2] == y[y < 2]).all()
    assert torch.isinf(prediction.scores[:, 2:]).all()  # unseen classes cannot be answered
    memory.observe(x[y >= 2], y[y >= 2], 1)
    memory.end_experience()
    assert (memory.predict(x).labels == y).float().mean() == 1.0


@pytest.mark.parametrize("cls", BASELINES + [PrototypeMemory])
def test_state_dict_round_trip(cls):
    x, y = clusters()
    a = cls(16, 4)
    a.observe(x, y)
    a.end_experience()
    b = cls(16, 4)
    b.load_state_dict(a.state_dict())
    pa, pb = a.predict(x), b.predict(x)
    assert torch.equal(pa.labels, pb.labels) and torch.allclose(pa.scores, pb.scores)
    assert a.stats() == b.stats()
    a.observe(x[:3] + 0.01, (y[:3] + 1) % 4)  # the copy is independent
    a.end_experience()
    assert not torch.equal(a.predict(x).scores, b.predict(x).scores)


def test_task_aware_prediction_masks_other_classes():
    x, y = clusters()
    memory = NCM(16, 4)
    memory.observe(x, y)
    masked = predict(memory, x, batch_size=7, classes=[2, 3])
    assert set(masked.labels.tolist()) <= {2, 3}


@pytest.mark.parametrize("cls", BASELINES + [PrototypeMemory])
def test_bad_input(cls):
    memory = cls(16, 4)
    with pytest.raises(DataError, match=r"expects \(N, 16\)"):
        memory.observe(torch.randn(3, 8), torch.zeros(3, dtype=torch.long))
    bad = torch.randn(3, 16)
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match="NaN or inf in 1 of 3 rows"):
        memory.observe(bad, torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="labels outside"):
        memory.observe(torch.randn(3, 16), torch.tensor([0, 4, 1]))


@pytest.mark.parametrize("kwargs,key", [({"similarity_threshold": 1.5}, "similarity_threshold"),
                                        ({"momentum": 0.0}, "momentum"), ({"top_k": 0}, "top_k"),
                                        ({"temperature": -1.0}, "temperature"), ({"max_prototypes": 0}, "max_prototypes"),
                                        ({"conditioning": "zca"}, "conditioning"), ({"backend": "annoy"}, "backend"),
                                        ({"backend_options": {"exact": {"efc": 3}}}, "backend_options"),
                                        ({"over_budget": "drop"}, "over_budget"),
                                        ({"class_budget": "fair"}, "class_budget"),
                                        ({"kernel_space": "raw"}, "kernel_space"),
                                        ({"holdout_metric": "f1"}, "holdout_metric"),
                                        ({"projection_dim": 0}, "projection_dim")])
def test_prototype_config_is_validated(kwargs, key):
    with pytest.raises(ConfigError, match=f"memory.{key}"):
        PrototypeMemory(4, 2, **kwargs)


def test_auto_readout_leaves_the_vote_where_it_loses_on_held_out_data():
    # Two classes whose means differ along a low-variance direction of a strongly stretched shared
    # covariance, far from the origin: the vote of nearby prototypes does poorly, global readouts
    # (class statistics, kernel ridge) well.
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([20.0] + [0.5] * 7)
    y = torch.arange(2).repeat_interleave(400)
    x = torch.randn(len(y), 8, generator=g) * scale + torch.tensor([0.0, 1.5] + [0.0] * 6) * y[:, None] + 30.0
    memory = PrototypeMemory(8, 2, readout="auto", backend="exact", conditioning="whiten", projection_dim=None)
    memory.observe(x, y, 0)
    assert memory.chosen == "vote" and memory.held_out  # nothing chosen while the held-out samples wait
    memory.end_experience()
    assert memory.chosen != "vote" and not memory.held_out
    assert memory.holdout_accuracy(memory.chosen) > memory.holdout_accuracy("vote")  # it won on held-out data
    fresh = torch.randn(len(y), 8, generator=g) * scale + torch.tensor([0.0, 1.5] + [0.0] * 6) * y[:, None] + 30.0
    restricted = PrototypeMemory(8, 2, readout="vote", backend="exact")
    restricted.observe(x, y, 0)
    assert restricted.chosen == "vote" and not restricted.tallies  # nothing held out, nothing chosen
    accuracy = lambda m: (m.predict(fresh).labels == y).float().mean()
    assert accuracy(memory) > accuracy(restricted)  # 0.911 against 0.898 when written


def test_kernel_ridge_reads_the_space_it_is_given():
    """kernel_space=conditioned: kernel ridge's prototypes are the store's conditioned ones (here whitened into 8 of
    16 dimensions), the same vectors its search reads; centred: the raw features minus the running mean."""
    x, y = clusters(per_class=60)
    fitted = {}
    for space in ("centred", "conditioned"):
        memory = PrototypeMemory(16, 4, readout="kernel_ridge", kernel_space=space, projection_dim=8, backend="exact")
        memory.observe(x, y, 0)
        memory.end_experience()
        fitted[space] = memory._current_fit()[0].prototypes
        assert (memory.predict(x).labels == y).float().mean() == 1.0
    conditioned = memory.store.conditioner.transform(memory.store.means[memory.store.ids])
    assert fitted["conditioned"].shape[1] == 8 and np.allclose(fitted["conditioned"].numpy(), conditioned, atol=1e-6)
    assert fitted["centred"].shape[1] == 16  # control: the other space is another set of vectors


def test_balanced_holdout_metric_weighs_each_class_alike():
    """Held-out answers of one experience: 90 of class 0, 10 of class 1. A readout that always says 0 scores 0.9 in
    accuracy and 0.5 balanced; one that gets 70 and 9 right scores 0.79 and 0.84: each metric picks another."""
    seen = {0: {0: 90, 1: 10}}
    tallies = {"always_zero": {0: {0: 90, 1: 0}}, "both": {0: {0: 70, 1: 9}}}
    scores = {}
    for metric in ("accuracy", "balanced_accuracy"):
        memory = PrototypeMemory(4, 2, holdout_metric=metric)
        memory.held_out_seen, memory.tallies = seen, tallies
        scores[metric] = {name: memory.holdout_accuracy(name) for name in tallies}
    assert scores["accuracy"] == pytest.approx({"always_zero": 0.9, "both": 0.79})
    assert scores["balanced_accuracy"] == pytest.approx({"always_zero": 0.5, "both": 0.5 * (70 / 90 + 9 / 10)})
    # a checkpoint from before the per-class tallies (one count per experience) loads as one class
    memory = PrototypeMemory(4, 2)
    state = memory.state_dict()
    state["readout"].update(tallies={"vote": {0: 45}}, held_out_seen={0: 50}, chosen="vote")
    memory.load_state_dict(state)
    assert memory.holdout_accuracy("vote") == pytest.approx(0.9)


def test_unknown_readout_is_named():
    with pytest.raises(ConfigError, match="memory.readout"):
        PrototypeMemory(8, 2, readout="best")


def test_unknown_score_rises_between_known_classes_and_far_from_them():
    """Mixtures of two known classes stand in for unknown ones: a query halfway between two class means scores
    as more unknown than the class means themselves (control), as does one far from everything."""
    from neurocl.memory.unknown import fit_unknown

    x, y = clusters(num_classes=3, per_class=80, dim=16, spread=0.2, seed=5)
    memory = PrototypeMemory(16, 4, readout="whitened_ncm", backend="exact", seed=0)
    memory.observe(x, y, ids=torch.arange(len(y)))
    memory.end_experience()  # settles: fits the score, standardised on the held-out samples
    score = memory._fitted[1]
    assert score.scale is not None and score.weights.shape[0] == 3 + 1  # 3 known classes and the mixture class
    centres = torch.stack([x[y == c].mean(0) for c in range(3)])
    between = (centres[0] + centres[1]) / 2
    assert (score(between[None]) > score(centres).max()).all()
    assert (score.mixture(between[None]) > score.mixture(centres).max()).all()
    assert (score(10 * centres[2:3]) > score(centres).max()).all()
    # the same statistics and seed give the same score; a restored memory keeps the standardisation
    again = fit_unknown(memory.store, np.random.default_rng([0, len(y)]), None, score.scale)
    assert torch.allclose(again(x), score(x), atol=1e-5)
    restored = PrototypeMemory(16, 4, readout="whitened_ncm", backend="exact", seed=0)
    restored.load_state_dict(memory.state_dict())
    assert torch.allclose(restored.predict(x).unknown, memory.predict(x).unknown, atol=1e-5)


@pytest.mark.parametrize("make", [lambda: PrototypeMemory(16, 4), lambda: SmallRanPAC(16, 4)])
def test_a_predict_before_end_experience_says_it_leaves_the_held_out_samples_out(make):
    memory = make()
    x, y = clusters()
    memory.observe(x, y, 0)
    with pytest.warns(UserWarning, match="held back until end_experience"):
        waiting = memory.predict(x)
    memory.end_experience()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # control: nothing waits now
        settled = memory.predict(x)
    assert not torch.equal(waiting.scores, settled.scores)  # the held-out samples joined at end_experience
