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
                 temperature: float = 0.1, hnsw_m: int = 16, ef_construction: int = 200,
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
        self.index.set_num_threads(1)  # single-item calls: threads only add overhead

    def _found(self, x: np.ndarray, label: int):
        if self.count == self.index.get_max_elements():
            capacity = min(2 * self.count, self.max_prototypes)
            self.index.resize_index(capacity)
            self._vectors = np.resize(self._vectors, (capacity, self.dim))
            self._label_counts = np.resize(self._label_counts, (capacity, self.num_classes))
        self.index.add_items(x[None], [self.count])
        self._vectors[self.count] = x
        self._label_counts[self.count] = 0
        self._label_counts[self.count, label] = 1
        self.count += 1

    def observe(self, features, labels, experience: int = 0):
        check_batch(features, self.dim, labels, self.num_classes)
        xs = torch.nn.functional.normalize(features.float(), dim=1).numpy()
        for x, label in zip(xs, labels.tolist()):
            if self.count == 0:
                self._found(x, label)
                continue
            ids, distances = self.index.knn_query(x[None], k=1)
            nearest, similarity = int(ids[0, 0]), 1.0 - float(distances[0, 0])
            if similarity >= self.threshold or self.count >= self.max_prototypes:
                p = (1 - self.momentum) * self.vectors[nearest] + self.momentum * x
                p /= np.linalg.norm(p)
                self.vectors[nearest] = p
                self.index.add_items(p[None], [nearest])  # same id: hnswlib updates in place
                self.label_counts[nearest, label] += 1
                self.updates += 1
            else:
                self._found(x, label)

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
