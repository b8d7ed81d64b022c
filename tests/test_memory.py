import numpy as np
import pytest
import torch

from neurocl.driver import predict
from neurocl.errors import ConfigError, DataError
from neurocl.memory import NCM, PrototypeMemory


def clusters(num_classes=4, per_class=30, dim=16, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


@pytest.mark.parametrize("make", [lambda: NCM(16, 4), lambda: PrototypeMemory(16, 4, similarity_threshold=0.9)])
def test_learns_separable_classes_and_abstains_before_training(make):
    memory = make()
    x, y = clusters()
    before = memory.predict(x[:5])
    assert before.abstained.all() and (before.labels == -1).all()
    memory.observe(x[y < 2], y[y < 2], 0)
    prediction = memory.predict(x)
    assert (prediction.labels[y < 2] == y[y < 2]).all()
    assert torch.isinf(prediction.scores[:, 2:]).all()  # unseen classes cannot be answered
    memory.observe(x[y >= 2], y[y >= 2], 1)
    assert (memory.predict(x).labels == y).float().mean() == 1.0


def test_prototypes_found_and_update_by_threshold():
    x, y = clusters(num_classes=3, spread=0.01)
    tight = PrototypeMemory(16, 3, similarity_threshold=0.95)
    tight.observe(x, y)
    assert tight.count == 3 and tight.updates == len(x) - 3  # one prototype per tight cluster
    assert (tight.label_counts.sum(axis=1) == 30).all() and (tight.label_counts.max(axis=1) == 30).all()
    everything = PrototypeMemory(16, 3, similarity_threshold=-1.0)
    everything.observe(x, y)
    assert everything.count == 1 and everything.label_counts.sum() == len(x)  # labels counted, not owned
    capped = PrototypeMemory(16, 3, similarity_threshold=1.0, max_prototypes=5)
    capped.observe(x, y)
    assert capped.count == 5


def test_prototype_index_grows_beyond_initial_capacity():
    x = torch.randn(1500, 8)
    memory = PrototypeMemory(8, 2, similarity_threshold=0.999)
    memory.observe(x, torch.zeros(1500, dtype=torch.long))
    assert memory.count == 1500 and memory.index.get_current_count() == 1500
    ids = memory.predict(x[:50]).evidence["prototype_ids"]
    assert (ids[:, 0] == torch.arange(50)).all()  # each sample's own prototype is nearest


def test_ema_update_moves_prototype_towards_sample():
    memory = PrototypeMemory(2, 1, similarity_threshold=0.0, momentum=0.5)
    memory.observe(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    memory.observe(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert np.allclose(memory.vectors[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)


@pytest.mark.parametrize("cls", [NCM, PrototypeMemory])
def test_state_dict_round_trip(cls):
    x, y = clusters()
    a = cls(16, 4)
    a.observe(x, y)
    b = cls(16, 4)
    b.load_state_dict(a.state_dict())
    pa, pb = a.predict(x), b.predict(x)
    assert torch.equal(pa.labels, pb.labels) and torch.allclose(pa.scores, pb.scores)
    assert a.stats() == b.stats()


def test_task_aware_prediction_masks_other_classes():
    x, y = clusters()
    memory = NCM(16, 4)
    memory.observe(x, y)
    masked = predict(memory, x, batch_size=7, classes=[2, 3])
    assert set(masked.labels.tolist()) <= {2, 3}


@pytest.mark.parametrize("cls", [NCM, PrototypeMemory])
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
                                        ({"temperature": -1.0}, "temperature")])
def test_prototype_config_is_validated(kwargs, key):
    with pytest.raises(ConfigError, match=f"memory.{key}"):
        PrototypeMemory(4, 2, **kwargs)
