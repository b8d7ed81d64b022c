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

from neurocl.data.base import Split
from neurocl.errors import ConfigError, DataError

FROZEN_FEATURE_MEMORIES = "memory=prototypes, prototypes_snn, ncm, slda, knn or ranpac"


@dataclass
class Experience:
    index: int
    classes: list[int]
    train_idx: torch.Tensor  # rows of the train features/labels
    test_idx: torch.Tensor   # rows of the test features/labels
    task_id: int | None      # known at test time in task-incremental streams


@dataclass
class Domain:
    """One domain's data, before encoding: the dataset's splits as that domain shows them."""
    name: str      # "" for the dataset as it is; else e.g. "rot30", "blur"; cached features are tagged with it
    train: Split
    test: Split


@dataclass
class OnlineSchedule:
    """How an online stream is fed and asked: task-free, one pass in the experiences' own sample order."""
    batch_size: int          # samples per observe
    eval_every: int          # stream samples between anytime evaluations (counted across tasks)
    eval_idx: torch.Tensor   # the fixed test rows of anytime evaluations (those of the classes seen so far count)


@dataclass
class Stream:
    experiences: list[Experience]
    task_aware: bool
    build_benchmark: Callable[[], object] | None = None  # None: no Avalanche form (multi-label, domain, online)
    multi_label: bool = False
    online: OnlineSchedule | None = None  # set: observe in small batches and answer at any moment
    novel_classes: bool = True  # each experience brings classes never seen before (open-set rows are measured)
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


class Scenario:
    """What every scenario declares: whether the task id is known at test time, whether Avalanche strategies
    can learn its stream, and the data its stream is built from (`domains`, called before anything is encoded)."""

    task_aware = False
    avalanche_form = False  # True: Stream.benchmark gives the stream to Avalanche strategies

    def domains(self, train: Split, test: Split) -> list[Domain]:
        """One Domain per domain of the stream: here the dataset as it is."""
        return [Domain("", train, test)]


class ClassIncremental(Scenario):
    """Classes arrive in groups of `classes_per_experience`; the task id is not given at test time.

    class_order: null keeps 0..C-1 in order (or a seeded permutation when
    shuffle_classes is true); a list fixes the order.
    """

    avalanche_form = True

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
        check_labels_present(num_classes, train=train_labels, test=test_labels)
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


class MultiLabelIncremental(Scenario):
    """Labels arrive in groups of `labels_per_experience` (in column order: by frequency for our datasets).

    Experience t trains on the samples that carry at least one of its labels, annotated with those labels only
    (the others are not known yet: partial labels, as in multi-label class-incremental learning); every test
    sample is a test sample of every experience, scored per label by AUROC and F1. Needs (N, L) 0/1 labels.
    """

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


def check_labels_present(num_classes: int, **labels_by_split):
    for name, labels in labels_by_split.items():
        missing = sorted(set(range(num_classes)) - set(labels.unique().tolist()))
        if missing:
            raise DataError(f"the {name} split has no samples of classes {missing}. "
                            "Fix: use a larger subset (dataset.train_size / dataset.test_size) or the full data.")


def stratified_parts(labels: torch.Tensor, parts: int, seed: int = 0) -> torch.Tensor:
    """(N,) part index of each row: every class's rows dealt in a seeded order into `parts` near-equal parts."""
    generator = torch.Generator().manual_seed(seed)
    part = torch.empty(len(labels), dtype=torch.long)
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        part[rows] = torch.arange(len(rows)) % parts
    return part


class DomainIncremental(Scenario):
    """The same classes in every experience; the domain changes: experience t holds the training samples of
    domain t, and its test set is the whole test split shown in domain t. R[t, k]: accuracy on domain k after
    learning domains 0..t.

    domains: rotations (each image turned by `rotations` degrees, one domain per angle) or corruptions (one
    domain per name in `corruptions`: clean or a kind of neurocl/data/corruptions.py at `severity`).
    partition_train: true deals each class's training samples into the domains (a new scanner brings new
    patients; each sample is encoded once); false gives every domain the whole training split, as Avalanche's
    RotatedMNIST. The partition is fixed (seed 0), like corrupted test sets, so that features are cached once;
    the run's seed orders each experience's samples.
    """

    KINDS = ("rotations", "corruptions")

    def __init__(self, domains: str = "rotations", rotations: list[float] = (0, 30, 60, 90),
                 corruptions: list[str] = ("clean", "gaussian_noise", "blur", "contrast", "occlusion"),
                 severity: float = 0.5, partition_train: bool = True):
        from neurocl.data.corruptions import KINDS as CORRUPTIONS

        if domains not in self.KINDS:
            raise ConfigError("scenario.domains", domains, f"must be one of {self.KINDS}",
                              "set scenario.domains=rotations or scenario.domains=corruptions")
        chosen = list(rotations if domains == "rotations" else corruptions)
        if not chosen:
            raise ConfigError(f"scenario.{domains}", chosen, "is empty: a domain stream needs at least one domain",
                              f"list them, e.g. scenario.{domains}=" + ("[0,30,60,90]" if domains == "rotations"
                                                                       else "[clean,gaussian_noise,blur]"))
        if domains == "corruptions":
            unknown = [c for c in chosen if c != "clean" and c not in CORRUPTIONS]
            if unknown:
                raise ConfigError("scenario.corruptions", chosen, f"names {unknown}, not clean or one of {CORRUPTIONS}",
                                  "use e.g. scenario.corruptions=[clean,gaussian_noise,blur,contrast,occlusion]")
        if len(set(map(str, chosen))) != len(chosen):
            raise ConfigError(f"scenario.{domains}", chosen, "names a domain twice", "list each domain once")
        self.kind, self.chosen, self.severity, self.partition_train = domains, chosen, severity, partition_train

    @property
    def names(self) -> list[str]:
        return [f"rot{float(a):g}" for a in self.chosen] if self.kind == "rotations" else [str(c) for c in self.chosen]

    def show(self, split: Split, index: int) -> Split:
        """`split` as domain `index` shows it."""
        from neurocl.data.corruptions import corrupt, rotate

        if self.kind == "rotations":
            return rotate(split, float(self.chosen[index]))
        name = self.chosen[index]
        return Split(split.images.clone(), split.labels, split.ids) if name == "clean" else \
            corrupt(split, name, self.severity)

    def domains(self, train: Split, test: Split) -> list[Domain]:
        if train.modality != "image" or not isinstance(train.data, torch.Tensor) or train.multi_label:
            raise ConfigError("scenario", "domain_incremental", f"its {self.kind} are made from single-label image "
                              f"tensors; this dataset holds {'multi-label ' if train.multi_label else ''}"
                              f"{train.modality} samples", "use an image dataset (dataset=fashion_mnist or digits), "
                              "or scenario=class_incremental")
        part = stratified_parts(train.labels, len(self.chosen)) if self.partition_train else None
        out = []
        for d, name in enumerate(self.names):
            shown = train if part is None else train.take((part == d).nonzero().flatten())
            out.append(Domain(name, self.show(shown, d), self.show(test, d)))
        return out

    def class_sequence(self, num_classes: int) -> list[int]:
        return list(range(num_classes))

    def build(self, train_features, train_labels, test_features, test_labels, num_classes: int,
              train_domain: torch.Tensor = None, test_domain: torch.Tensor = None) -> Stream:
        """train_domain, test_domain: (N,) the domain index of each row (rows of the domains, concatenated)."""
        check_labels_present(num_classes, train=train_labels, test=test_labels)
        classes = list(range(num_classes))
        experiences = [Experience(d, classes, (train_domain == d).nonzero().flatten(),
                                  (test_domain == d).nonzero().flatten(), None) for d in range(len(self.chosen))]
        return Stream(experiences, task_aware=False, novel_classes=False)


def iblurry_split(labels: torch.Tensor, class_order: list[int], num_tasks: int, disjoint_fraction: float,
                  blurry_fraction: float, generator: torch.Generator) -> tuple[list[torch.Tensor], list[list[int]]]:
    """The i-Blurry-N-M split (Koh et al., ICLR 2022): per task, its training rows in stream order, and its home
    classes. The first N% of `class_order` are disjoint classes, the rest blurry, each group dealt evenly over the
    tasks. A disjoint class appears only in its home task; a blurry class keeps (100 - M)% of its samples in its
    home task, and the M% of every blurry class are pooled, shuffled and cut into one equal chunk per task. Each
    task's samples are then shuffled."""
    n_disjoint = round(len(class_order) * disjoint_fraction / 100)
    deal = lambda group: [group[len(group) * t // num_tasks:len(group) * (t + 1) // num_tasks] for t in range(num_tasks)]
    disjoint, blurry = deal(class_order[:n_disjoint]), deal(class_order[n_disjoint:])
    home = [sorted(disjoint[t] + blurry[t]) for t in range(num_tasks)]
    tasks, pooled = [[] for _ in range(num_tasks)], []
    shuffled = lambda rows: rows[torch.randperm(len(rows), generator=generator)]
    for t in range(num_tasks):
        for c in disjoint[t]:
            tasks[t].append((labels == c).nonzero().flatten())
        for c in blurry[t]:
            rows = shuffled((labels == c).nonzero().flatten())
            scattered = round(len(rows) * blurry_fraction / 100)
            tasks[t].append(rows[scattered:])
            pooled.append(rows[:scattered])
    if pooled:
        for t, chunk in enumerate(torch.tensor_split(shuffled(torch.cat(pooled)), num_tasks)):
            tasks[t].append(chunk)
    empty = torch.empty(0, dtype=torch.long)
    return [shuffled(torch.cat(parts) if parts else empty) for parts in tasks], home


def stratified_subset(labels: torch.Tensor, size: int | None, generator: torch.Generator) -> torch.Tensor:
    """Sorted rows of a seeded stratified subset of about `size` rows (each class in its share); None: all rows."""
    if size is None or size >= len(labels):
        return torch.arange(len(labels))
    keep = []
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        keep.append(rows[torch.randperm(len(rows), generator=generator)][:max(1, round(size * len(rows) / len(labels)))])
    return torch.cat(keep).sort().values


class OnlineBlurry(Scenario):
    """Online and task-free, with blurry task boundaries (i-Blurry-N-M, Koh et al., ICLR 2022): the training
    split is one pass of batches of `batch_size`, in the order of `iblurry_split`; the memory is never told a
    task. Every `eval_every` stream samples, and at the end, it answers a fixed stratified subset of
    `eval_samples` test samples, of which those of the classes seen so far count (the anytime accuracy;
    A_auc is its mean). The experiences are the tasks: R[t, k] is accuracy on the whole test set of task k's
    home classes after task t's last sample.

    disjoint_fraction N: % of the classes that appear in one task only; blurry_fraction M: % of each other
    class's samples scattered over all tasks. class order, split and evaluation subset are drawn from `seed`.
    """

    def __init__(self, num_tasks: int = 5, disjoint_fraction: float = 50, blurry_fraction: float = 10,
                 batch_size: int = 16, eval_every: int = 100, eval_samples: int | None = 2000, seed: int = 0):
        for key, value in (("num_tasks", num_tasks), ("batch_size", batch_size), ("eval_every", eval_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"scenario.{key}", value, "must be a positive integer",
                                  f"set scenario.{key}=" + {"num_tasks": "5", "batch_size": "16", "eval_every": "100"}[key])
        for key, value in (("disjoint_fraction", disjoint_fraction), ("blurry_fraction", blurry_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise ConfigError(f"scenario.{key}", value, "is a percentage: it must lie in [0, 100]",
                                  f"set scenario.{key}=" + ("50" if key == "disjoint_fraction" else "10")
                                  + " (i-Blurry-50-10)")
        if eval_samples is not None and (isinstance(eval_samples, bool) or not isinstance(eval_samples, int)
                                         or eval_samples < 1):
            raise ConfigError("scenario.eval_samples", eval_samples, "must be a positive integer or null (all)",
                              "set scenario.eval_samples=2000")
        self.num_tasks, self.disjoint_fraction, self.blurry_fraction = num_tasks, disjoint_fraction, blurry_fraction
        self.batch_size, self.eval_every, self.eval_samples, self.seed = batch_size, eval_every, eval_samples, seed

    def class_sequence(self, num_classes: int) -> list[int]:
        if num_classes < self.num_tasks:
            raise ConfigError("scenario.num_tasks", self.num_tasks, f"exceeds the dataset's {num_classes} classes "
                              "(every task needs a home class)", f"set scenario.num_tasks={num_classes} or fewer")
        return torch.randperm(num_classes, generator=torch.Generator().manual_seed(self.seed)).tolist()

    def build(self, train_features, train_labels, test_features, test_labels, num_classes: int) -> Stream:
        if train_labels.ndim != 1:
            raise ConfigError("scenario", "online", "the dataset is multi-label ((N, L) labels)",
                              "use scenario=multi_label")
        check_labels_present(num_classes, train=train_labels, test=test_labels)
        generator = torch.Generator().manual_seed(self.seed)
        order = self.class_sequence(num_classes)
        task_rows, home = iblurry_split(train_labels, order, self.num_tasks, self.disjoint_fraction,
                                        self.blurry_fraction, generator)
        if not all(home):
            raise ConfigError("scenario.disjoint_fraction", self.disjoint_fraction, f"leaves a task of the "
                              f"{self.num_tasks} without a home class ({num_classes} classes)",
                              "choose fewer tasks, or a disjoint share that deals both groups over every task")
        experiences = [Experience(t, home[t], rows, torch.isin(test_labels, torch.as_tensor(home[t])).nonzero().flatten(),
                                  None) for t, rows in enumerate(task_rows)]
        eval_idx = stratified_subset(test_labels, self.eval_samples, generator)
        return Stream(experiences, task_aware=False, novel_classes=False,  # blurry classes come before their task
                      online=OnlineSchedule(self.batch_size, self.eval_every, eval_idx))
