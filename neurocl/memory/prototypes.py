"""`memory=prototypes`: the prototype store read out by a top-k similarity vote.

A query's score for class c is the softmax(similarity / temperature)-weighted
share of c in the label histograms of its `top_k` nearest prototypes, all in
the store's conditioned space.
"""

import numpy as np
import torch

from neurocl.errors import ConfigError
from neurocl.memory.base import Prediction, check_batch, prediction_from_scores
from neurocl.memory.store import PrototypeStore


class PrototypeMemory:
    def __init__(self, dim: int, num_classes: int, top_k: int = 10, temperature: float = 0.1, **store_options):
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError("memory.top_k", top_k, "must be a positive integer", "set memory.top_k=10")
        if temperature <= 0:
            raise ConfigError("memory.temperature", temperature, "must be positive", "set memory.temperature=0.1")
        self.dim, self.num_classes, self.top_k, self.temperature = dim, num_classes, top_k, temperature
        self.store = PrototypeStore(dim, num_classes, **store_options)

    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        self.store.observe(features.float().numpy(), labels.numpy(), None if ids is None else np.asarray(ids))

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        store = self.store
        if len(store) == 0:
            return prediction_from_scores(torch.full((len(features), self.num_classes), float("-inf")))
        ids, sims = store.backend.search(store.conditioner.transform(features.float().numpy()), self.top_k)
        weights = torch.softmax(torch.from_numpy(sims / self.temperature), dim=1)
        counts = torch.from_numpy(store.label_counts[ids].astype(np.float32))  # (n, k, C)
        scores = torch.einsum("nk,nkc->nc", weights.float(), counts / counts.sum(dim=2, keepdim=True))
        scores[:, ~self.known_classes()] = float("-inf")
        confidence = scores.max(dim=1).values.clamp(min=0)  # the winner's share of the vote
        return prediction_from_scores(scores, {"prototype_ids": torch.from_numpy(ids), "confidence": confidence})

    def known_classes(self) -> torch.Tensor:
        """(C,) bool: classes that some prototype holds samples of."""
        return torch.from_numpy(self.store.label_counts[self.store.ids].sum(axis=0) > 0)

    def state_dict(self) -> dict:
        return self.store.state_dict()

    def load_state_dict(self, state: dict):
        self.store.load_state_dict(state)

    def stats(self) -> dict:
        return {"prototypes": len(self.store), **self.store.events, "memory_bytes": self.store.nbytes}
