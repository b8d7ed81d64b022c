"""Fashion-MNIST from its idx files (Debian's dataset-fashion-mnist by default)."""

from pathlib import Path

import torch

from neurocl.data.base import Split, Splits, check_size
from neurocl.data.idx import read_idx
from neurocl.errors import DataError

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class FashionMNIST:
    def __init__(self, root: str = "/usr/share/datasets/fashion-mnist",
                 train_size: int | None = None, test_size: int | None = None,
                 image_shape: list[int] | None = None):
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        self.root = Path(root).expanduser()
        self.train_size, self.test_size, self.image_shape = train_size, test_size, image_shape

    def _find(self, stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (self.root / name).is_file():
                return self.root / name
        raise DataError(
            f"Fashion-MNIST file {stem}[.gz] not found in {self.root}. Fix: install it with "
            "`apt-get install dataset-fashion-mnist` (as root), or download the four idx files "
            "from the Fashion-MNIST project and point dataset.root=/path/to/them."
        )

    def _split(self, split: str, size) -> Split:
        images_file, labels_file = (self._find(s) for s in FILES[split])
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"{images_file} has shape {images.shape} and {labels_file} {labels.shape}; "
                "expected (N, 28, 28) images and (N,) labels. Fix: reinstall the dataset files."
            )
        x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
        ids = [f"{images_file.name}#{row}" for row in range(len(x))]
        return Split(x, torch.from_numpy(labels.astype("int64")), ids).head(size)

    def load(self) -> Splits:
        return Splits("fashion_mnist", self._split("train", self.train_size),
                      self._split("test", self.test_size), CLASS_NAMES).check_image_shape(self.image_shape)
