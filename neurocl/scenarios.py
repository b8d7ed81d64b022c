"""Streams of experiences, and the same streams as Avalanche benchmarks.

Our memories take their slice of the feature tensors by row (`train_idx`,
`test_idx`). Avalanche strategies get the very same experiences as a real
Avalanche benchmark (`Stream.benchmark`, from Avalanche's own generators),
built on first use: importing Avalanche takes about 8 s on 2 cores, more
than a whole run of most memories. `tests/test_scenarios.py` checks that
both give the same experiences; each Avalanche dataset carries a `sample_idx`
attribute that maps its samples back to our rows.
"""

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils.data import Dataset

from neurocl.errors import ConfigError, DataError


@dataclass
class Experience:
    index: int
    classes: list[int]
    train_idx: torch.Tensor  # rows of the train features/labels
    test_idx: torch.Tensor   # rows of the test features/labels
    task_id: int | None      # known at test time in task-incremental streams


@dataclass
class Stream:
    experiences: list[Experience]
    task_aware: bool
    build_benchmark: Callable[[], object] | None = None  # None: no Avalanche form (multi-label streams)
    multi_label: bool = False
    _benchmark: object = field(default=None, repr=False)

    @property
    def benchmark(self):
        """The Avalanche CLScenario of these experiences, for Avalanche strategies; built on first use."""
        if self._benchmark is None and self.build_benchmark is not None:
            self._benchmark = self.build_benchmark()
        return self._benchmark

    def __len__(self):
        return len(self.experiences)


class FeatureDataset(Dataset):
    """(feature row, int label): int labels as in Avalanche's own datasets, so that its buffers
    (iCaRL's exemplars) and the stream's samples collate into one mini-batch."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.features[i], self.labels[i]


def avalanche_dataset(features: torch.Tensor, labels: torch.Tensor, task_labels: bool = True):
    from avalanche.benchmarks.utils import DataAttribute
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareClassificationDataset
    from avalanche.benchmarks.utils.data_attribute import TaskLabels
    from avalanche.benchmarks.utils.flat_data import ConstantSequence

    attributes = [DataAttribute(labels.tolist(), "targets"), DataAttribute(list(range(len(labels))), "sample_idx")]
    if task_labels:
        # Task label 0 in every item, as in Avalanche's own classification datasets: its strategies
        # read the task id from the last element of a mini-batch. Task-aware streams get theirs from
        # task_incremental_benchmark (replacing an existing attribute there leaves it inconsistent).
        attributes.append(TaskLabels(ConstantSequence(0, len(labels))))
    return TaskAwareClassificationDataset([FeatureDataset(features, labels)], data_attributes=attributes)


class ClassIncremental:
    """Classes arrive in groups of `classes_per_experience`; the task id is not given at test time.

    class_order: null keeps 0..C-1 in order (or a seeded permutation when
    shuffle_classes is true); a list fixes the order.
    """

    task_aware = False

    def __init__(self, classes_per_experience: int = 2, class_order: list[int] | None = None,
                 shuffle_classes: bool = False, seed: int = 0):
        if not isinstance(classes_per_experience, int) or classes_per_experience < 1:
            raise ConfigError("scenario.classes_per_experience", classes_per_experience,
                              "must be a positive integer", "set scenario.classes_per_experience=2")
        if class_order is not None and shuffle_classes:
            raise ConfigError("scenario.shuffle_classes", shuffle_classes, "a fixed class_order cannot be shuffled",
                              "set scenario.class_order=null or scenario.shuffle_classes=false")
        self.classes_per_experience = classes_per_experience
        self.class_order = None if class_order is None else [int(c) for c in class_order]
        self.shuffle_classes, self.seed = shuffle_classes, seed

    def class_sequence(self, num_classes: int) -> list[int]:
        """The class order of the stream; raises ConfigError if it cannot be split as configured."""
        if self.class_order is not None:
            if sorted(self.class_order) != list(range(num_classes)):
                raise ConfigError("scenario.class_order", self.class_order,
                                  f"must be a permutation of 0..{num_classes - 1}", "list every class once, or use null")
            order = self.class_order
        elif self.shuffle_classes:
            order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(self.seed)).tolist()
        else:
            order = list(range(num_classes))
        if num_classes % self.classes_per_experience:
            raise ConfigError("scenario.classes_per_experience", self.classes_per_experience,
                              f"does not divide the {num_classes} classes of the dataset",
                              f"choose a divisor of {num_classes}")
        return order

    def build(self, train_features, train_labels, test_features, test_labels, num_classes: int) -> Stream:
        if train_labels.ndim != 1:
            raise ConfigError("scenario", type(self).__name__, "the dataset is multi-label ((N, L) labels)",
                              "use scenario=multi_label")
        order = self.class_sequence(num_classes)
        for name, labels in (("train", train_labels), ("test", test_labels)):
            missing = sorted(set(range(num_classes)) - set(labels.unique().tolist()))
            if missing:
                raise DataError(f"the {name} split has no samples of classes {missing}. "
                                "Fix: use a larger subset (dataset.train_size / dataset.test_size) or the full data.")
        size = self.classes_per_experience
        groups = [order[s:s + size] for s in range(0, len(order), size)]
        rows = lambda labels, group: torch.isin(labels, torch.as_tensor(group)).nonzero().flatten()
        experiences = [Experience(index=t, classes=sorted(group), train_idx=rows(train_labels, group),
                                  test_idx=rows(test_labels, group), task_id=t if self.task_aware else None)
                       for t, group in enumerate(groups)]
        return Stream(experiences, self.task_aware,
                      lambda: self.avalanche_benchmark(train_features, train_labels, test_features, test_labels, order))

    def avalanche_benchmark(self, train_features, train_labels, test_features, test_labels, order: list[int]):
        """The stream as an Avalanche benchmark, from Avalanche's own generators."""
        from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
        from avalanche.benchmarks.scenarios.task_aware import task_incremental_benchmark

        benchmark = class_incremental_benchmark(
            {"train": avalanche_dataset(train_features, train_labels, task_labels=not self.task_aware),
             "test": avalanche_dataset(test_features, test_labels, task_labels=not self.task_aware)},
            class_order=order, num_experiences=len(order) // self.classes_per_experience)
        if self.task_aware:
            benchmark = task_incremental_benchmark(benchmark)
        # iCaRL still reads experience.benchmark.n_classes_per_exp and .classes_order, which the new generators no longer set.
        benchmark.n_classes_per_exp = [self.classes_per_experience] * (len(order) // self.classes_per_experience)
        benchmark.classes_order = order
        for experience in (*benchmark.train_stream, *benchmark.test_stream):
            experience.benchmark = benchmark
        return benchmark


class TaskIncremental(ClassIncremental):
    """As class-incremental, but the task id (experience index) is known at test time,
    so a prediction chooses only among the classes of that task."""

    task_aware = True


class MultiLabelIncremental:
    """Labels arrive in groups of `labels_per_experience` (in column order: by frequency for our datasets).

    Experience t trains on the samples that carry at least one of its labels, annotated with those labels only
    (the others are not known yet: partial labels, as in multi-label class-incremental learning); every test
    sample is a test sample of every experience, scored per label by AUROC and F1. Needs (N, L) 0/1 labels.
    """

    task_aware = False

    def __init__(self, labels_per_experience: int = 2):
        if not isinstance(labels_per_experience, int) or labels_per_experience < 1:
            raise ConfigError("scenario.labels_per_experience", labels_per_experience, "must be a positive integer",
                              "set scenario.labels_per_experience=2")
        self.labels_per_experience = labels_per_experience

    def class_sequence(self, num_labels: int) -> list[int]:
        return list(range(num_labels))

    def build(self, train_features, train_labels, test_features, test_labels, num_labels: int) -> Stream:
        if train_labels.ndim != 2 or test_labels.ndim != 2:
            raise ConfigError("scenario", "multi_label", "needs a multi-label dataset ((N, L) 0/1 labels)",
                              "use a dataset with labels=multi (e.g. dataset=iu_xray_reports dataset.labels=multi)")
        groups = [list(range(s, min(s + self.labels_per_experience, num_labels)))
                  for s in range(0, num_labels, self.labels_per_experience)]
        experiences = []
        for t, labels in enumerate(groups):
            train_idx = (train_labels[:, labels] == 1).any(dim=1).nonzero().flatten()
            if not len(train_idx):
                raise DataError(f"no training sample carries labels {labels}. Fix: raise dataset.min_reports.")
            experiences.append(Experience(t, labels, train_idx, torch.arange(len(test_labels)), None))
        return Stream(experiences, False, multi_label=True)
