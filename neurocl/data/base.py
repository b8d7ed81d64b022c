"""In-memory labelled image sets: what every dataset loader returns."""

import hashlib
from dataclasses import dataclass

import torch

from neurocl.errors import ConfigError, DataError, check_finite


@dataclass
class ImageSplit:
    images: torch.Tensor  # float32 (N, C, H, W), pixel values in [0, 1]
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise DataError(
                f"{len(self.images)} images but {len(self.labels)} labels. "
                "Fix: the image and label files belong to different splits; reinstall them."
            )
        check_finite(self.images, "images")

    def __len__(self):
        return len(self.labels)

    def fingerprint(self) -> str:
        """Content hash, so a feature cache never serves features of other data."""
        h = hashlib.blake2b(digest_size=16)
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()

    def head(self, size: int | None, seed: int = 0) -> "ImageSplit":
        """A fixed random subset of `size` samples (all when size is None), in original order."""
        if size is None or size >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:size].sort().values
        return ImageSplit(self.images[keep], self.labels[keep])


@dataclass
class Splits:
    name: str
    train: ImageSplit
    test: ImageSplit
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_image_shape(self, image_shape) -> "Splits":
        """The config declares image_shape (the pixels encoder sizes itself by it): hold it to that."""
        actual = list(self.train.images.shape[1:])
        if image_shape is not None and list(image_shape) != actual:
            raise ConfigError("dataset.image_shape", list(image_shape), f"the {self.name} images are {actual}",
                              f"set dataset.image_shape={actual}")
        return self


def check_size(key: str, size):
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ConfigError(key, size, "must be a positive integer or null (all samples)", f"set {key}=1000 or {key}=null")
