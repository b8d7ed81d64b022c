"""A first prototype memory on a real hnswlib index.

Each sample finds its nearest prototype by cosine similarity. At or above
`similarity_threshold` it pulls that prototype towards itself by EMA,
p <- normalize((1 - momentum) p + momentum x); below it, it founds a new
prototype (once `max_prototypes` exist, it always updates the nearest).
Prototypes are concepts, not classes: each counts the labels it absorbed.
A query's score for class c is the softmax(similarity / temperature)-weighted
share of c in the label counts of its `top_k` nearest prototypes.
"""

import hnswlib
import numpy as np
import torch

from neurocl.errors import ConfigError
from neurocl.memory.base import Prediction, check_batch, prediction_from_scores


class PrototypeMemory:
    def __init__(self, dim: int, num_classes: int, similarity_threshold: float = 0.85,
                 momentum: float = 0.1, max_prototypes: int = 5000, top_k: int = 10,
                 temperature: float = 0.1, hnsw_m: int = 16, ef_construction: int = 64,
                 ef_search: int = 64, seed: int = 0):
        if not -1 <= similarity_threshold <= 1:
            raise ConfigError("memory.similarity_threshold", similarity_threshold,
                              "a cosine similarity must lie in [-1, 1]", "set memory.similarity_threshold=0.85")
        if not 0 < momentum <= 1:
            raise ConfigError("memory.momentum", momentum, "must be in (0, 1]", "set memory.momentum=0.1")
        for key, value in (("max_prototypes", max_prototypes), ("top_k", top_k), ("hnsw_m", hnsw_m),
                           ("ef_construction", ef_construction), ("ef_search", ef_search)):
            if value < 1:
                raise ConfigError(f"memory.{key}", value, "must be at least 1", f"set memory.{key} to a positive integer")
        if temperature <= 0:
            raise ConfigError("memory.temperature", temperature, "must be positive", "set memory.temperature=0.1")
        self.dim, self.num_classes = dim, num_classes
        self.threshold, self.momentum, self.max_prototypes = similarity_threshold, momentum, max_prototypes
        self.top_k, self.temperature = top_k, temperature
        self.hnsw = {"M": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search, "seed": seed}
        self.count = self.updates = 0
        self._allocate(capacity=min(1024, max_prototypes))

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.count]

    @property
    def label_counts(self) -> np.ndarray:
        return self._label_counts[: self.count]

    def _allocate(self, capacity: int):
        self._vectors = np.zeros((capacity, self.dim), np.float32)
        self._label_counts = np.zeros((capacity, self.num_classes), np.int64)
        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(max_elements=capacity, M=self.hnsw["M"],
                              ef_construction=self.hnsw["ef_construction"], random_seed=self.hnsw["seed"])
        self.index.set_ef(max(self.hnsw["ef_search"], self.top_k))

    def _ensure_capacity(self, needed: int):
        if needed <= len(self._vectors):
            return
        capacity = min(max(2 * len(self._vectors), needed), self.max_prototypes)
        self.index.resize_index(capacity)
        self._vectors = np.resize(self._vectors, (capacity, self.dim))
        self._label_counts = np.resize(self._label_counts, (capacity, self.num_classes))

    def observe(self, features, labels, experience: int = 0):
        """One pass over the batch, in order.

        The index is searched once for the whole batch and brought up to date
        at its end; prototypes founded within the batch are searched exactly,
        so a batch behaves like a sequence (up to the index's view of the
        EMA moves of older prototypes within the batch).
        """
        check_batch(features, self.dim, labels, self.num_classes)
        xs = torch.nn.functional.normalize(features.float(), dim=1).numpy()
        if self.count:
            ids, distances = self.index.knn_query(xs, k=1, num_threads=-1)
            nearest, similarity = ids[:, 0].astype(np.int64), 1.0 - distances[:, 0]
        else:
            nearest, similarity = np.full(len(xs), -1), np.full(len(xs), -np.inf, np.float32)
        first_new, touched = self.count, set()
        self._ensure_capacity(min(self.count + len(xs), self.max_prototypes))
        for x, label, j, s in zip(xs, labels.tolist(), nearest.tolist(), similarity.tolist()):
            if self.count > first_new:  # prototypes founded in this batch are not indexed yet
                fresh = self._vectors[first_new:self.count] @ x
                best = int(fresh.argmax())
                if fresh[best] > s:
                    j, s = first_new + best, float(fresh[best])
            if s >= self.threshold or self.count >= self.max_prototypes:
                p = (1 - self.momentum) * self._vectors[j] + self.momentum * x
                self._vectors[j] = p / np.linalg.norm(p)
                self._label_counts[j, label] += 1
                self.updates += 1
                touched.add(j)
            else:
                self._vectors[self.count] = x
                self._label_counts[self.count] = 0
                self._label_counts[self.count, label] = 1
                self.count += 1
        moved = np.array(sorted(j for j in touched if j < first_new), dtype=np.int64)
        changed = np.concatenate([moved, np.arange(first_new, self.count)])
        if len(changed):  # an existing id is updated in place by hnswlib
            self.index.add_items(self._vectors[changed], changed, num_threads=1)  # threaded inserts are not reproducible

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        n = features.shape[0]
        if self.count == 0:
            return prediction_from_scores(torch.full((n, self.num_classes), float("-inf")))
        k = min(self.top_k, self.count)
        queries = torch.nn.functional.normalize(features.float(), dim=1).numpy()
        ids, distances = self.index.knn_query(queries, k=k, num_threads=-1)
        weights = torch.softmax(torch.from_numpy((1.0 - distances) / self.temperature), dim=1)
        counts = torch.from_numpy(self.label_counts[ids.astype(np.int64)]).float()  # (n, k, C)
        shares = counts / counts.sum(dim=2, keepdim=True)
        scores = torch.einsum("nk,nkc->nc", weights.float(), shares)
        seen = torch.from_numpy(self.label_counts.sum(axis=0) > 0)
        scores[:, ~seen] = float("-inf")
        return prediction_from_scores(scores, {"prototype_ids": torch.from_numpy(ids.astype(np.int64))})

    def state_dict(self) -> dict:
        return {"vectors": self.vectors.copy(), "label_counts": self.label_counts.copy(), "updates": self.updates}

    def load_state_dict(self, state: dict):
        vectors = np.asarray(state["vectors"], np.float32)
        self.count, self.updates = len(vectors), int(state["updates"])
        self._allocate(capacity=max(min(1024, self.max_prototypes), self.count))
        self._vectors[: self.count] = vectors
        self._label_counts[: self.count] = state["label_counts"]
        if self.count:
            self.index.add_items(self.vectors, np.arange(self.count))

    def stats(self) -> dict:
        # hnswlib level 0 per element: the vector, 2M links + their count, the external label.
        index_bytes = self.count * (4 * self.dim + 4 * (2 * self.hnsw["M"] + 1) + 8)
        return {"prototypes": self.count, "ema_updates": self.updates,
                "memory_bytes": index_bytes + self.vectors.nbytes + self.label_counts.nbytes}
