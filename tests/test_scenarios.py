import pytest
import torch

from neurocl.errors import ConfigError, DataError
from neurocl.scenarios import ClassIncremental, TaskIncremental


def data(num_classes=6, per_class=5, dim=3):
    y = torch.arange(num_classes).repeat_interleave(per_class)
    return torch.randn(len(y), dim), y


def build(scenario, num_classes=6):
    (xtr, ytr), (xte, yte) = data(num_classes), data(num_classes, per_class=2)
    return scenario.build(xtr, ytr, xte, yte, num_classes), ytr, yte


def test_class_incremental_split_in_order():
    stream, ytr, yte = build(ClassIncremental(classes_per_experience=2))
    assert [e.classes for e in stream.experiences] == [[0, 1], [2, 3], [4, 5]]
    for e in stream.experiences:
        assert sorted(ytr[e.train_idx].unique().tolist()) == e.classes and len(e.train_idx) == 10
        assert sorted(yte[e.test_idx].unique().tolist()) == e.classes and e.task_id is None
    assert not stream.task_aware
    seen = torch.cat([e.train_idx for e in stream.experiences])
    assert sorted(seen.tolist()) == list(range(30))  # a partition of the data

def same_as_avalanche(stream) -> bool:
    """Our experiences against those of the stream's Avalanche benchmark (its own generators)."""
    pairs = zip(stream.experiences, stream.benchmark.train_stream, stream.benchmark.test_stream)
    return len(stream.benchmark.train_stream) == len(stream) and all(
        e.classes == sorted(train.dataset.targets.uniques)
        and e.train_idx.tolist() == sorted(train.dataset.sample_idx)
        and e.test_idx.tolist() == sorted(test.dataset.sample_idx)
        and e.task_id == (train.task_label if stream.task_aware else None)
        for e, train, test in pairs)


@pytest.mark.parametrize("scenario", [ClassIncremental(classes_per_experience=2),
                                      ClassIncremental(classes_per_experience=3, shuffle_classes=True, seed=3),
                                      TaskIncremental(classes_per_experience=2)])
def test_experiences_are_those_of_the_avalanche_benchmark(scenario):
    stream, _, _ = build(scenario)
    assert stream._benchmark is None  # Avalanche is imported only for strategies that need it
    assert same_as_avalanche(stream)
    # control: a stream whose experiences differ from Avalanche's is caught
    stream.experiences[0].train_idx = stream.experiences[0].train_idx[1:]
    assert not same_as_avalanche(stream)


def test_class_order_fixed_and_shuffled():
    stream, _, _ = build(ClassIncremental(classes_per_experience=3, class_order=[5, 4, 3, 2, 1, 0]))
    assert [e.classes for e in stream.experiences] == [[3, 4, 5], [0, 1, 2]]
    a, _, _ = build(ClassIncremental(shuffle_classes=True, seed=1))
    b, _, _ = build(ClassIncremental(shuffle_classes=True, seed=1))
    assert [e.classes for e in a.experiences] == [e.classes for e in b.experiences]


def test_task_incremental_gives_task_ids():
    stream, _, _ = build(TaskIncremental(classes_per_experience=3))
    assert stream.task_aware and [e.task_id for e in stream.experiences] == [0, 1]


def test_bad_scenarios():
    with pytest.raises(ConfigError, match="does not divide the 6 classes"):
        build(ClassIncremental(classes_per_experience=4))
    with pytest.raises(ConfigError, match="positive integer"):
        ClassIncremental(classes_per_experience=0)
    with pytest.raises(ConfigError, match="permutation"):
        build(ClassIncremental(class_order=[0, 1, 1, 2, 3, 4]))
    xtr, ytr = data()
    with pytest.raises(DataError, match="no samples of classes \\[5\\]"):
        ClassIncremental().build(xtr, ytr, xtr[:25], ytr[:25], 6)
