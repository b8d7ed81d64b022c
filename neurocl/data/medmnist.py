"""MedMNIST v2 2-D datasets (Yang et al., 2023) from their `.npz` files (pathmnist.npz, chestmnist_224.npz, ...).

The file holds six arrays: {train,val,test}_images, uint8 (N, H, W) for grey sets or (N, H, W, 3) for colour
sets, and {train,val,test}_labels, (N, 1) class indices for single-label sets or (N, L) 0/1 for multi-label
ChestMNIST (L = 14). The files are not shipped with neurocl (CC BY 4.0 and other licences per set); download
them from the MedMNIST project (medmnist.com, or zenodo record 10519652) and set dataset.path.

Options:
  val          what to do with the official validation split: ignore (default; neurocl has no model selection)
               or train (append it to the training split);
  train_size / test_size   fixed random subsets (seed 0), as Split.head;
  class_names  the names of the classes (multi-label: of the label columns); default "0" .. "C-1".
Sample ids name the file, the array and the row: `pathmnist.npz#train_images[17]`.
"""

import zipfile
from pathlib import Path

import numpy as np
import torch

from neurocl.data.base import Split, Splits, check_size
from neurocl.data.base import head_rows
from neurocl.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
VAL_POLICIES = ("ignore", "train")


class MedMNIST:
    def __init__(self, path: str, val: str = "ignore", train_size: int | None = None, test_size: int | None = None,
                 class_names: list[str] | None = None, image_shape: list[int] | None = None):
        if val not in VAL_POLICIES:
            raise ConfigError("dataset.val", val, f"must be one of {VAL_POLICIES}", "set dataset.val=ignore")
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        if class_names is not None and len(set(map(str, class_names))) != len(class_names):
            raise ConfigError("dataset.class_names", list(class_names), "repeats a name", "list each class once")
        self.path = Path(path).expanduser()
        self.val, self.train_size, self.test_size, self.image_shape = val, train_size, test_size, image_shape
        self.class_names = None if class_names is None else [str(c) for c in class_names]

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays, each checked for its key, dtype and shape."""
        if not self.path.is_file():
            raise DataError(f"MedMNIST file {self.path} not found. Fix: download the .npz of the set "
                            "(e.g. pathmnist.npz from medmnist.com) and set dataset.path=/path/to/it.")
        try:  # allow_pickle=False: a data file must never run code
            with np.load(self.path, allow_pickle=False) as npz:
                keys = set(npz.files)
                missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" not in keys]
                if missing:
                    raise DataError(f"{self.path}: no key {missing[0]!r} (missing: {missing}; found: {sorted(keys)}). "
                                    "Fix: use a MedMNIST 2-D .npz as published (keys train_images, train_labels, "
                                    "val_images, val_labels, test_images, test_labels).")
                arrays = {key: npz[key] for key in keys if key.split("_")[0] in SPLITS}
        except DataError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(f"{self.path}: not a readable .npz ({type(e).__name__}: {e}). "
                            "Fix: re-download the MedMNIST file.") from e
        width = None
        for split in SPLITS:
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            key = f"{split}_images"
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
                raise DataError(f"{self.path}: {key} is {images.dtype} {images.shape}; expected uint8 (N, H, W) or "
                                "(N, H, W, 3). Fix: use a 2-D MedMNIST file (the 3-D sets, *mnist3d, are volumes).")
            key = f"{split}_labels"
            if labels.ndim != 2 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{self.path}: {key} is {labels.dtype} {labels.shape} for {len(images)} images; "
                                f"expected integers (N, 1) or (N, L) with N={len(images)}. "
                                "Fix: re-download the MedMNIST file.")
            if width is not None and labels.shape[1] != width:
                raise DataError(f"{self.path}: {key} has {labels.shape[1]} columns, train_labels {width}. "
                                "Fix: re-download the MedMNIST file.")
            width = labels.shape[1]
        return arrays

    def load(self) -> Splits:
        arrays = self.arrays()
        multi = arrays["train_labels"].shape[1] > 1
        used = ("train", "val", "test") if self.val == "train" else ("train", "test")
        for split in used:
            labels, key = arrays[f"{split}_labels"], f"{split}_labels"
            if multi and not np.isin(labels, (0, 1)).all():
                row = int(np.nonzero(~np.isin(labels, (0, 1)))[0][0])
                raise DataError(f"{self.path}: {key}[{row}] = {labels[row].tolist()}; a multi-label row holds 0/1. "
                                "Fix: re-download the MedMNIST file.")
            if not multi and labels.size and labels.min() < 0:
                row = int(np.argmin(labels[:, 0]))
                raise DataError(f"{self.path}: {key}[{row}] = {int(labels[row, 0])}; class indices are >= 0. "
                                "Fix: re-download the MedMNIST file.")
        if multi:
            count = arrays["train_labels"].shape[1]
        else:
            count = 1 + max((int(arrays[f"{s}_labels"].max()) for s in used if arrays[f"{s}_labels"].size), default=-1)
        names = self.class_names or [str(c) for c in range(count)]
        if len(names) < count or (multi and len(names) != count):
            raise ConfigError("dataset.class_names", names, f"{self.path.name} has {count} "
                              f"{'label columns' if multi else 'classes'}", f"list {count} names, or null")

        def split(parts, size) -> Split:
            ids = [f"{self.path.name}#{p}_images[{i}]" for p in parts for i in range(len(arrays[f"{p}_images"]))]
            rows = head_rows(len(ids), size).numpy()  # subset first: the 224-px sets are tens of GB as floats
            images = np.concatenate([arrays[f"{p}_images"] for p in parts])[rows]
            labels = np.concatenate([arrays[f"{p}_labels"] for p in parts])[rows].astype(np.int64)
            x = torch.from_numpy(images).float().div_(255)
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
            y = torch.from_numpy(labels if multi else labels[:, 0])
            return Split(x, y, [ids[i] for i in rows.tolist()], "image", names if multi else None)

        train_parts = ("train", "val") if self.val == "train" else ("train",)
        splits = Splits(self.path.stem, split(train_parts, self.train_size), split(("test",), self.test_size), names)
        return splits.check_image_shape(self.image_shape)
