"""On-disk feature cache, keyed by encoder (model, weights, preprocessing, device, dtype) and data content.

Each entry is `<stem>.npy` (float32 features) plus `<stem>.json` (the key, the
shape and a blake2b checksum of the .npy). An entry that fails any check
(key, shape, checksum, float32 dtype, finite values) is moved aside as `*.corrupt`, never used and never deleted, and rebuilt.
"""

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from neurocl.data.base import Split
from neurocl.encoders.base import Encoder, encode_split
from neurocl.io import atomic_path, write_json

log = logging.getLogger(__name__)


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


class FeatureCache:
    def __init__(self, root: str | None, enabled: bool = True):
        self.root = Path(root).expanduser() if root else None
        self.enabled = enabled and self.root is not None
        self.hits = self.misses = 0

    def key(self, encoder: Encoder, split: Split, dataset: str, split_name: str) -> dict:
        encoder_key = encoder.cache_key()
        missing = {"name", "device", "dtype"} - set(encoder_key)
        if missing:  # a programming error in an encoder, not a user's
            raise TypeError(f"{type(encoder).__name__}.cache_key() lacks {sorted(missing)}")
        return {"encoder": encoder_key, "dataset": dataset, "split": split_name, "modality": split.modality,
                "data_fingerprint": split.fingerprint()}

    def paths(self, key: dict) -> tuple[Path, Path]:
        digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
        stem = f"{key['dataset']}-{key['split']}-{key['encoder']['name']}-{digest}"
        return self.root / f"{stem}.npy", self.root / f"{stem}.json"

    def features(self, encoder: Encoder, split: Split, dataset: str, split_name: str) -> torch.Tensor:
        """Cached features of `split`, computing and storing them on a miss."""
        desc = f"encoding {dataset}/{split_name} with {encoder.name}"
        if not self.enabled:
            return encode_split(encoder, split, desc)
        key = self.key(encoder, split, dataset, split_name)
        data_path, meta_path = self.paths(key)
        expected_shape = [len(split), encoder.dim]
        if data_path.exists() or meta_path.exists():
            problem = self._check(data_path, meta_path, key, expected_shape)
            if problem is None:
                self.hits += 1
                log.info("feature cache hit: %s", data_path)
                return torch.from_numpy(np.load(data_path))
            self._quarantine(data_path, meta_path, problem)
        self.misses += 1
        features = encode_split(encoder, split, desc)
        self._store(features, data_path, meta_path, key)
        return features

    def _check(self, data_path: Path, meta_path: Path, key: dict, expected_shape: list) -> str | None:
        """None if the entry is sound, else what is wrong with it."""
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            return f"its metadata {meta_path.name} is missing or unreadable ({e})"
        if meta.get("key") != key:
            return "its key does not match the encoder and data of this run"
        if meta.get("shape") != expected_shape:
            return f"it holds shape {meta.get('shape')}, expected {expected_shape}"
        if not data_path.is_file() or _file_digest(data_path) != meta.get("checksum"):
            return "its checksum does not match (truncated or modified file)"
        try:
            array = np.load(data_path, mmap_mode="r")
        except (OSError, ValueError) as e:
            return f"numpy cannot read it ({e})"
        if list(array.shape) != expected_shape:
            return f"the file holds shape {list(array.shape)}, expected {expected_shape}"
        if array.dtype != np.float32:
            return f"it holds {array.dtype}, expected float32"
        if not np.isfinite(array).all():
            return "it holds NaN or inf values"
        return None

    def _quarantine(self, data_path: Path, meta_path: Path, problem: str):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = []
        for path in (data_path, meta_path):
            if path.exists():
                target = path.with_name(f"{path.name}.{stamp}.corrupt")
                path.rename(target)
                moved.append(target.name)
        log.warning("feature cache entry %s is unusable: %s. Moved it aside (%s) and re-encoding; "
                    "delete the .corrupt files once you no longer need them.", data_path, problem,
                    ", ".join(moved))

    def _store(self, features: torch.Tensor, data_path: Path, meta_path: Path, key: dict):
        array = features.numpy().astype(np.float32, copy=False)
        with atomic_path(data_path) as tmp:
            with tmp.open("wb") as f:
                np.save(f, array)
        write_json(meta_path, {"key": key, "shape": list(array.shape), "dtype": "float32",
                               "checksum": _file_digest(data_path)})
