"""Nearest-prototype search behind one interface: exact (the default), hnswlib, faiss.
Each backend owns its save/load: hnswlib writes its graph, the others are rebuilt from the vectors.

Vectors are unit norm and similarity is the inner product (cosine). Ids are
the store's slot numbers; a removed id may be added again later. The backend
holds the store's only copy of its conditioned means: vectors(ids) reads them back.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from neurocl.errors import ConfigError
from neurocl.io import atomic_path
from neurocl.runtime import resolve_device


class RebuiltOnLoad:
    """Save/load for indexes cheaper to rebuild from the store's vectors than to store: nothing is written."""

    def save(self, directory) -> tuple[list, dict]:
        return [], {}

    def load(self, directory, meta: dict, ids: np.ndarray, vectors: np.ndarray):
        self.rebuild(ids, vectors)

    def index_state(self) -> dict:
        return {}  # empty: rebuilt from the vectors, exactly as before


class ExactBackend(RebuiltOnLoad):
    """Brute force: one matmul and a top-k. On a GPU it beats any index up to about a million vectors.
    The vectors are packed, one row per live id: the store's slots outlive their prototypes (its arrays
    grow past the budget while a batch is absorbed), and searching every slot cost up to 2.6x. Removed
    rows are dropped at the next search. device: auto takes a GPU when there is one. precision: how the
    vectors are kept (float16: half the bytes of float32, cosines within about 1e-3); searches compute in float32."""

    def __init__(self, dim: int, device: str = "auto", precision: str = "float16", seed: int = 0):
        if precision not in ("float32", "float16"):
            raise ConfigError("memory.backend_options.exact.precision", precision, "float32 or float16",
                              "set it to float32")
        self.dim, self.device, self.dtype = dim, resolve_device(device), getattr(torch, precision)
        self.rebuild(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    def upsert(self, ids: np.ndarray, vectors: np.ndarray):
        ids = np.asarray(ids, np.int64)
        if not len(ids):
            return
        if ids.max() >= len(self.row_of):
            self.row_of = np.concatenate([self.row_of, np.full(max(int(ids.max()) + 1, 2 * len(self.row_of))
                                                               - len(self.row_of), -1, np.int64)])
        vectors = torch.as_tensor(vectors, device=self.device, dtype=torch.float32).to(self.dtype)
        rows = self.row_of[ids]
        old = rows >= 0
        if old.any():
            self.matrix[torch.as_tensor(rows[old], device=self.device)] = vectors[torch.as_tensor(old, device=self.device)]
        new = ~old
        if new.any():
            self.row_of[ids[new]] = len(self.ids) + np.arange(int(new.sum()))
            self.ids = torch.cat([self.ids, torch.as_tensor(ids[new], device=self.device)])
            self.matrix = torch.cat([self.matrix, vectors[torch.as_tensor(new, device=self.device)]])
            self.unsorted = True

    def remove(self, ids: np.ndarray):
        ids = np.asarray(ids, np.int64)
        ids = ids[(ids < len(self.row_of))]
        rows = self.row_of[ids]
        rows = rows[rows >= 0]
        if len(rows):
            self.ids[torch.as_tensor(rows, device=self.device)] = -1
            self.row_of[ids] = -1
            self.dead += len(rows)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray):
        self.ids = torch.zeros(0, dtype=torch.int64, device=self.device)
        self.matrix = torch.zeros(0, self.dim, device=self.device, dtype=self.dtype)
        self.row_of = np.zeros(0, np.int64)  # slot id -> row, -1: none
        self.dead, self.unsorted = 0, False
        self.upsert(ids, vectors)

    def _compact(self):
        """Drop removed rows and order the rest by id: ties (duplicate vectors) fall as they did when
        every slot was searched, in id order."""
        keep = (self.ids >= 0).nonzero().squeeze(1)
        keep = keep[self.ids[keep].argsort()]
        self.ids, self.matrix = self.ids[keep], self.matrix[keep]
        self.row_of[:] = -1
        self.row_of[self.ids.cpu().numpy()] = np.arange(len(self.ids))
        self.dead, self.unsorted = 0, False

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        rows = self.row_of[np.asarray(ids, np.int64)]
        if (rows < 0).any():
            raise KeyError(f"ids not in the index: {np.asarray(ids)[rows < 0][:5].tolist()}")
        return self.matrix[torch.as_tensor(rows, device=self.device)].float().cpu().numpy()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.dead or self.unsorted:
            self._compact()
        k = min(k, len(self.ids))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        sims = torch.as_tensor(queries, device=self.device, dtype=torch.float32) @ self.matrix.float().T
        values, rows = sims.topk(k, dim=1)
        return self.ids[rows].cpu().numpy(), values.cpu().numpy()

    def __len__(self):
        return len(self.ids) - self.dead

    @property
    def nbytes(self) -> int:
        return len(self) * (self.matrix.element_size() * self.dim + 8)


class HnswBackend:
    """hnswlib HNSW graph, space "ip". ef_search is raised to k when k is larger."""

    def __init__(self, dim: int, M: int = 16, ef_construction: int = 100, ef_search: int = 64, seed: int = 0):
        self.dim, self.M, self.ef_construction, self.ef_search, self.seed = dim, M, ef_construction, ef_search, seed
        self.rebuild(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(max_elements=max(1024, 2 * len(ids)), M=self.M,
                              ef_construction=self.ef_construction, random_seed=self.seed)
        self.removed: set[int] = set()
        self.upsert(ids, vectors)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray):
        if not len(ids):
            return
        needed = self.index.get_current_count() + len(ids)
        if needed > self.index.get_max_elements():
            self.index.resize_index(2 * needed)
        # A removed id added again is unmarked and updated in place by hnswlib.
        self.index.add_items(np.asarray(vectors, np.float32), np.asarray(ids), num_threads=1)  # threaded inserts are not reproducible
        self.removed -= set(int(i) for i in ids)

    def remove(self, ids: np.ndarray):
        for i in ids:
            self.index.mark_deleted(int(i))
        self.removed |= set(int(i) for i in ids)

    def save(self, directory) -> tuple[list, dict]:
        """The graph itself (rebuilding it would not give the same graph), atomically."""
        path = Path(directory) / "index.hnsw"
        with atomic_path(path) as tmp:
            self.index.save_index(str(tmp))
        return [path], {"removed": sorted(self.removed)}

    def load(self, directory, meta: dict, ids: np.ndarray, vectors: np.ndarray):
        self.index.load_index(str(Path(directory) / "index.hnsw"))
        self.removed = set(meta.get("removed", []))

    def index_state(self) -> dict:
        """The graph as bytes, for checkpoints."""
        with tempfile.TemporaryDirectory() as tmp:
            self.index.save_index(f"{tmp}/index.hnsw")
            graph = np.fromfile(f"{tmp}/index.hnsw", np.uint8)
        return {"graph": graph, "removed": sorted(self.removed)}

    def load_index_state(self, state: dict):
        with tempfile.TemporaryDirectory() as tmp:
            state["graph"].tofile(f"{tmp}/index.hnsw")
            self.index.load_index(f"{tmp}/index.hnsw")
        self.removed = set(state["removed"])

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.get_items(np.asarray(ids), return_type="numpy").astype(np.float32, copy=False)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        self.index.set_ef(max(self.ef_search, k))
        ids, distances = self.index.knn_query(np.asarray(queries, np.float32), k=k, num_threads=-1)
        return ids.astype(np.int64), 1.0 - distances

    def __len__(self):
        return self.index.get_current_count() - len(self.removed)

    @property
    def nbytes(self) -> int:
        # level 0 per element: the vector, 2M links and their count, the label; upper levels are ~1/M of that
        return self.index.get_current_count() * (4 * self.dim + 4 * (2 * self.M + 1) + 8)


class FaissBackend(RebuiltOnLoad):
    """faiss exact inner-product index with id removal (the `faiss` extra)."""

    def __init__(self, dim: int, seed: int = 0):
        try:
            import faiss
        except ImportError as e:
            raise ConfigError("memory.backend", "faiss", "faiss is not installed",
                              "pip install -e '.[faiss]', or use memory.backend=hnswlib") from e
        self.faiss, self.dim = faiss, dim
        self.rebuild(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    def rebuild(self, ids, vectors):
        self.index = self.faiss.IndexIDMap2(self.faiss.IndexFlatIP(self.dim))
        self.upsert(ids, vectors)

    def upsert(self, ids, vectors):
        if len(ids):
            self.remove(ids)
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids):
        if len(ids):
            self.index.remove_ids(np.asarray(ids, np.int64))

    def vectors(self, ids) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.asarray(ids, np.int64))

    def search(self, queries, k):
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        sims, ids = self.index.search(np.ascontiguousarray(queries, np.float32), k)
        return ids, sims

    def __len__(self):
        return self.index.ntotal

    @property
    def nbytes(self) -> int:
        return self.index.ntotal * (4 * self.dim + 8)


BACKENDS = {"hnswlib": HnswBackend, "exact": ExactBackend, "faiss": FaissBackend}


def make_backend(name: str, dim: int, **options):
    if name not in BACKENDS:
        raise ConfigError("memory.backend", name, f"unknown backend; one of {sorted(BACKENDS)}",
                          "set memory.backend=exact")
    try:
        return BACKENDS[name](dim, **options)
    except TypeError as e:
        import inspect

        allowed = [p for p in inspect.signature(BACKENDS[name]).parameters if p not in ("dim", "seed")]
        raise ConfigError("memory.backend_options", options, f"not options of the {name} backend ({e})",
                          f"use only {allowed}") from None
