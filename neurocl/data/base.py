"""Labelled samples of any modality: what every dataset loader returns.

A `Split` holds N samples of one modality, their labels and a stable id per
sample that points back to its source (a file and row, a report id, a page).

    modality     data
    image        float32 tensor (N, C, H, W), pixel values in [0, 1]
    page         document pages: a tensor as for images, or a lazy sequence that renders them (`Pages`)
    text         list of N strings
    image_text   `ImageText`: an image tensor and a list of texts, paired by row

Labels are int64 (N,) class indices, or (N, L) 0/1 for multi-label data.
Data other than tensors and string lists implements `SampleData`.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from neurocl.errors import ConfigError, DataError, check_finite

MODALITIES = ("image", "page", "text", "image_text")


@runtime_checkable
class SampleData(Protocol):
    """A sequence of samples that is not a plain tensor or string list (pairs, lazily rendered pages)."""

    def __len__(self) -> int: ...

    def take(self, index: torch.Tensor) -> "SampleData": ...

    def load(self):
        """The samples in concrete form, for an encoder (pages: a pixel tensor)."""

    def digest(self, h) -> None:
        """Update hash `h` with everything that determines the samples' content."""


@dataclass
class ImageText:
    """Image-text pairs, paired by row: an image and its report, a page and its text."""

    images: torch.Tensor | SampleData
    texts: list[str]

    def __post_init__(self):
        if len(self.images) != len(self.texts):
            raise DataError(f"{len(self.images)} images but {len(self.texts)} texts in an image-text split. "
                            "Fix: every image needs exactly one text (drop unpaired samples).")

    def __len__(self):
        return len(self.texts)

    def take(self, index: torch.Tensor) -> "ImageText":
        return ImageText(take(self.images, index), take(self.texts, index))

    def load(self) -> "ImageText":
        return ImageText(load(self.images), self.texts)

    def digest(self, h):
        digest(self.images, h)
        digest(self.texts, h)


def take(data, index: torch.Tensor):
    """Rows `index` of tensor, string-list or SampleData `data`."""
    if isinstance(data, torch.Tensor):
        return data[index]
    if isinstance(data, list):
        return [data[i] for i in index.tolist()]
    return data.take(index)


def load(data):
    return data if isinstance(data, (torch.Tensor, list)) else data.load()


def digest(data, h):
    if isinstance(data, torch.Tensor):
        h.update(f"tensor{tuple(data.shape)}{data.dtype}".encode())
        h.update(data.contiguous().numpy().tobytes())
    elif isinstance(data, list):
        h.update(f"texts{len(data)}".encode())
        for text in data:  # length-prefixed, so ["ab", "c"] and ["a", "bc"] differ
            encoded = text.encode()
            h.update(len(encoded).to_bytes(8, "little") + encoded)
    else:
        data.digest(h)


@dataclass
class Split:
    data: torch.Tensor | list[str] | SampleData
    labels: torch.Tensor  # int64 (N,), or (N, L) 0/1 for multi-label
    ids: list[str] | None = None  # stable source ids; None: the row numbers
    modality: str = "image"
    label_names: list[str] | None = field(default=None, repr=False)  # multi-label: the name of each column
    # per-sample source records (answer type, exact answers, snippets, file and row): not features, never hashed
    meta: list[dict] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; one of {MODALITIES}")
        if len(self.data) != len(self.labels):
            raise DataError(f"{len(self.data)} samples but {len(self.labels)} labels. "
                            "Fix: the sample and label files belong to different splits; reinstall them.")
        if self.ids is None:
            self.ids = [str(i) for i in range(len(self.labels))]
        elif len(self.ids) != len(self.labels):
            raise DataError(f"{len(self.ids)} sample ids for {len(self.labels)} samples. Fix: one id per sample.")
        if self.meta is not None and len(self.meta) != len(self.labels):
            raise DataError(f"{len(self.meta)} sample records for {len(self.labels)} samples. Fix: one per sample.")
        if isinstance(self.data, torch.Tensor):
            check_finite(self.data, f"{self.modality} samples")
        elif self.modality == "text" and not all(isinstance(t, str) for t in self.data):
            raise DataError("a text split holds non-string samples. Fix: decode every sample to str.")

    def __len__(self):
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @property
    def images(self) -> torch.Tensor:
        if self.modality not in ("image", "page") or not isinstance(self.data, torch.Tensor):
            raise TypeError(f"a {self.modality} split has no image tensor")
        return self.data

    def fingerprint(self) -> str:
        """Content hash (samples, texts included, and labels): a feature cache never serves features of other data."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.modality.encode())
        digest(self.data, h)
        h.update(self.labels.contiguous().numpy().tobytes())
        return h.hexdigest()

    def take(self, index: torch.Tensor) -> "Split":
        rows = index.tolist()
        return Split(take(self.data, index), self.labels[index], [self.ids[i] for i in rows], self.modality,
                     self.label_names, None if self.meta is None else [self.meta[i] for i in rows])

    def head(self, size: int | None, seed: int = 0) -> "Split":
        """A fixed random subset of `size` samples (all when size is None), in original order."""
        return self if size is None or size >= len(self) else self.take(head_rows(len(self), size, seed))

    def stratified_head(self, size: int | None) -> "Split":
        """A fixed subset of `size` samples with the class proportions of the whole (seed 0), in original order."""
        if size is None or size >= len(self) or self.multi_label:
            return self.head(size)
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(torch.arange(len(self)), train_size=size, random_state=0, stratify=self.labels)
        return self.take(keep.sort().values)

    def batches(self, batch_size: int):
        """(start, data) of consecutive batches, for encoders."""
        for start in range(0, len(self), batch_size):
            yield start, load(take(self.data, torch.arange(start, min(start + batch_size, len(self)))))


@dataclass
class Splits:
    name: str
    train: Split
    test: Split
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def modality(self) -> str:
        return self.train.modality

    def check_image_shape(self, image_shape) -> "Splits":
        """The config declares image_shape (the pixels encoder sizes itself by it): hold it to that."""
        actual = list(self.train.images.shape[1:])
        if image_shape is not None and list(image_shape) != actual:
            raise ConfigError("dataset.image_shape", list(image_shape), f"the {self.name} images are {actual}",
                              f"set dataset.image_shape={actual}")
        return self


def head_rows(n: int, size: int | None, seed: int = 0) -> torch.Tensor:
    """The rows `Split.head(size, seed)` keeps: loaders pick them before decoding anything."""
    if size is None or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def check_size(key: str, size):
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ConfigError(key, size, "must be a positive integer or null (all samples)", f"set {key}=1000 or {key}=null")


def stratified_split(labels: torch.Tensor, test_fraction: float, stratify: bool = True):
    """Sorted train and test rows, seed 0: a dataset's split is part of the dataset, not of the run."""
    from sklearn.model_selection import train_test_split

    rows = torch.arange(len(labels))
    train, test = train_test_split(rows, test_size=test_fraction, random_state=0,
                                   stratify=labels if stratify else None)
    return train.sort().values, test.sort().values
