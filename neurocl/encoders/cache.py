"""On-disk feature cache, keyed by encoder (model, weights, preprocessing, device, dtype) and data content.

Each entry is `<stem>.npy` (float32 features) plus `<stem>.json` (the key, the
shape and a blake2b checksum of the .npy). An entry that fails any check
(key, shape, checksum, float32 dtype, finite values) is moved aside as `*.corrupt`, never used and never deleted, and rebuilt.

Sharded encoding (neurocl/encode.py): shard i of n encodes its contiguous rows of a split (`shard_bounds`) into
`<stem>.shard-<i>-of-<n>.npy` / `.json` beside the entry, written and checked like an entry (the same key, shape,
checksum, dtype and finiteness checks, plus its rows); `assemble` checks every shard of a split, concatenates them
into the entry that `features` itself would have written (same key, paths and metadata: a run then hits it) and
removes the shard files. A shard file already sound for the same key and rows is reused, not encoded again.

Concurrent runs share the cache: a pair is published under an exclusive lock on `.neurocl-cache.lock` in the
cache directory and read under a shared one, so no reader sees (or moves aside) half of a pair that is being
written. Encoding itself runs outside the lock. Temporaries orphaned by a killed writer are removed a day later.
"""

import fcntl
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from neurocl.data.base import Split
from neurocl.encoders.base import Encoder, encode_split
from neurocl.encoders.ensemble import Ensemble
from neurocl.errors import DataError, NeuroclError
from neurocl.io import TMP_SUFFIX, atomic_path, why_unwritable, write_json

log = logging.getLogger(__name__)

LOCK = ".neurocl-cache.lock"
ORPHAN_AGE_S = 24 * 3600  # a temporary this old has no live writer


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


class ShardError(NeuroclError):
    """A shard of a sharded encoding failed, is missing, or does not hold what it should."""


def shard_bounds(n: int, count: int, batch_size: int | None = None) -> list[tuple[int, int]]:
    """The contiguous rows [start, stop) of each of `count` shards of n rows, in order, covering all of them.

    When every shard can get whole batches (n >= count * batch_size), shards start at multiples of batch_size, so
    each shard encodes exactly the batches a single process would: encoders whose output depends on the batch
    (padding to the longest text, batch-size-dependent kernels) then give the same features as one process.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    unit = batch_size if batch_size and n >= count * batch_size else 1
    blocks = -(-n // unit)
    edges = [min(n, unit * (blocks * i // count)) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


class FeatureCache:
    def __init__(self, root: str | None, enabled: bool = True):
        self.root = Path(root).expanduser() if root else None
        self.enabled = enabled and self.root is not None
        self.hits = self.misses = 0
        if self.enabled:
            self._check_usable()
            self._remove_orphans()

    def _check_usable(self):
        """Fail now, not after minutes of encoding, when entries could not be written (nothing is created yet)."""
        problem = why_unwritable(self.root)
        if problem:
            raise DataError(f"the feature cache directory {self.root} {problem}. Fix: set paths.cache_dir to a "
                            "writable directory (or NEUROCL_CACHE_DIR), or cache.enabled=false to encode every run.")

    def _remove_orphans(self):
        now = time.time()
        for leftover in self.root.glob(f".*{TMP_SUFFIX}"):
            try:
                if now - leftover.stat().st_mtime > ORPHAN_AGE_S:
                    leftover.unlink()
                    log.info("feature cache: removed %s, left by a writer killed over a day ago", leftover.name)
            except FileNotFoundError:  # another run removed it first
                pass

    @contextmanager
    def _locked(self, exclusive: bool):
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK).open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

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

    def shard_paths(self, key: dict, index: int, count: int) -> tuple[Path, Path]:
        """Where shard `index` of `count` of the entry `key` lives: beside the entry, named after it."""
        data_path, meta_path = self.paths(key)
        tag = f".shard-{index}-of-{count}"
        return data_path.with_name(data_path.stem + tag + ".npy"), meta_path.with_name(meta_path.stem + tag + ".json")

    def cached(self, encoder: Encoder, split: Split, dataset: str, split_name: str) -> bool:
        """Whether a sound entry for `split` is in the cache (nothing is moved or encoded)."""
        if not self.enabled:
            return False
        if isinstance(encoder, Ensemble):
            return all(self.cached(member, split, dataset, split_name) for member in encoder.members)
        key = self.key(encoder, split, dataset, split_name)
        with self._locked(exclusive=False):
            return self._check(*self.paths(key), key, [len(split), encoder.dim]) is None

    def write_shard(self, encoder: Encoder, split: Split, dataset: str, split_name: str, index: int,
                    count: int) -> dict:
        """Encode shard `index` of `count` of `split` (its rows from `shard_bounds`) into its shard file.

        Returns what the assembling process needs: the entry's key (as this process computes it: its encoder's
        device and dtype), the rows, the shard file, and whether a sound shard file from an earlier try was reused.
        """
        if not self.enabled:
            raise ValueError("sharded encoding writes into the feature cache; this one is disabled")
        key = self.key(encoder, split, dataset, split_name)
        start, stop = shard_bounds(len(split), count, encoder.batch_size)[index]
        data_path, meta_path = self.shard_paths(key, index, count)
        identity = {"rows": [start, stop], "shard": index, "shards": count}
        with self._locked(exclusive=False):
            reused = (data_path.exists() and meta_path.exists()
                      and self._check(data_path, meta_path, key, [stop - start, encoder.dim], identity) is None)
        if reused:
            log.info("shard %d of %d of %s/%s: reusing %s", index, count, dataset, split_name, data_path)
        else:
            try:
                features = encode_split(encoder, split.take(torch.arange(start, stop)),
                                        f"encoding {dataset}/{split_name} rows {start}-{stop} with {encoder.name}")
            except DataError as e:  # its rows are the shard's: say which rows of the split they are
                raise DataError(f"{dataset}/{split_name} rows {start}-{stop} (shard {index} of {count}; rows "
                                f"below count from {start}): {e}") from e
            with self._locked(exclusive=True):
                self._store(features, data_path, meta_path, key, identity)
        return {"split": split_name, "key": key, "rows": [start, stop], "path": str(data_path), "reused": reused}

    def check_shards(self, key: dict, bounds: list[tuple[int, int]], dim: int) -> list[tuple[int, str]]:
        """(shard index, what is wrong with it) for each unsound shard file of entry `key`; empty when all are sound."""
        with self._locked(exclusive=False):
            return self._unsound_shards(key, bounds, dim)

    def _unsound_shards(self, key: dict, bounds: list[tuple[int, int]], dim: int) -> list[tuple[int, str]]:
        problems = []
        for index, (start, stop) in enumerate(bounds):
            data_path, meta_path = self.shard_paths(key, index, len(bounds))
            if not data_path.exists() and not meta_path.exists():
                problem = "its shard file is missing"
            else:
                identity = {"rows": [start, stop], "shard": index, "shards": len(bounds)}
                problem = self._check(data_path, meta_path, key, [stop - start, dim], identity)
            if problem:
                where = f"shard {index} of {len(bounds)} (rows {start}-{stop}, {data_path})"
                problems.append((index, f"{where}: {problem}"))
        return problems

    def assemble(self, key: dict, bounds: list[tuple[int, int]], dim: int) -> Path:
        """Concatenate the shards of entry `key` into the entry itself, check it, and remove the shard files.

        `bounds` are the rows of every shard (`shard_bounds` of the whole split). Any unsound shard raises
        ShardError naming it, before anything is written; the entry is the one `features` would write.
        """
        problems = self.check_shards(key, bounds, dim)
        if problems:
            raise ShardError(f"cannot assemble {self.paths(key)[0].name}: " + "; ".join(m for _, m in problems))
        shards = [self.shard_paths(key, index, len(bounds)) for index in range(len(bounds))]
        array = np.concatenate([np.load(data) for data, _ in shards]) if shards else np.empty((0, dim), np.float32)
        data_path, meta_path = self.paths(key)
        expected = [bounds[-1][1] if bounds else 0, dim]
        with self._locked(exclusive=True):
            try:
                self._store(torch.from_numpy(array), data_path, meta_path, key)
                problem = self._check(data_path, meta_path, key, expected)
                if problem:
                    raise ShardError(f"the assembled entry {data_path} is unsound: {problem}")
            except BaseException:  # never leave half an entry: data without its metadata, or an unsound pair
                data_path.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                raise
        for data, meta in shards:
            data.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        log.info("assembled %s from %d shards", data_path, len(bounds))
        return data_path

    def features(self, encoder: Encoder, split: Split, dataset: str, split_name: str) -> torch.Tensor:
        """Cached features of `split`, computing and storing them on a miss. An ensemble's come from its
        members' own entries (encoded on a miss), so each member is encoded once whatever ensembles use it."""
        if isinstance(encoder, Ensemble):
            return encoder.combine([self.features(member, split, dataset, split_name) for member in encoder.members])
        desc = f"encoding {dataset}/{split_name} with {encoder.name}"
        if not self.enabled:
            return encode_split(encoder, split, desc)
        key = self.key(encoder, split, dataset, split_name)
        data_path, meta_path = self.paths(key)
        cached = self._load(data_path, meta_path, key, [len(split), encoder.dim])
        if cached is not None:
            self.hits += 1
            log.info("feature cache hit: %s", data_path.name)  # its folder is paths.cache_dir
            return cached
        self.misses += 1
        features = encode_split(encoder, split, desc)
        with self._locked(exclusive=True):
            self._store(features, data_path, meta_path, key)
        return features

    def _load(self, data_path: Path, meta_path: Path, key: dict, expected_shape: list) -> torch.Tensor | None:
        """A sound entry's features; None when there is none, after moving an unsound one aside. Publishing holds
        the exclusive lock, so a pair being written is waited for, never judged half-written."""
        if not (data_path.exists() or meta_path.exists()):
            return None
        with self._locked(exclusive=False):
            if self._check(data_path, meta_path, key, expected_shape) is None:
                return torch.from_numpy(np.load(data_path))
        with self._locked(exclusive=True):  # checked again alone: only now is an unsound entry surely unsound
            problem = self._check(data_path, meta_path, key, expected_shape)
            if problem is None:
                return torch.from_numpy(np.load(data_path))
            self._quarantine(data_path, meta_path, problem)
        return None

    def _check(self, data_path: Path, meta_path: Path, key: dict, expected_shape: list,
               identity: dict | None = None) -> str | None:
        """None if the entry (or shard: `identity`, its rows and index) is sound, else what is wrong with it."""
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            return f"its metadata {meta_path.name} is missing or unreadable ({e})"
        for name, value in (identity or {}).items():
            if meta.get(name) != value:
                return f"its metadata says {name} {meta.get(name)}, expected {value}"
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

    def _store(self, features: torch.Tensor, data_path: Path, meta_path: Path, key: dict,
               identity: dict | None = None):
        array = features.numpy().astype(np.float32, copy=False)
        with atomic_path(data_path) as tmp:
            with tmp.open("wb") as f:
                np.save(f, array)
        write_json(meta_path, {"key": key, "shape": list(array.shape), "dtype": "float32",
                               "checksum": _file_digest(data_path), **(identity or {})})
