"""Nearest class mean: one running mean per class, compared with the query by cosine."""

import torch
import torch.nn.functional as F

from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores


class NCM(MemoryBase):
    def __init__(self, dim: int, num_classes: int):
        self.dim, self.num_classes = dim, num_classes
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.long)

    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        self.sums.index_add_(0, labels, features.double())
        self.counts += torch.bincount(labels, minlength=self.num_classes)

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        means = F.normalize((self.sums / self.counts.clamp(min=1).unsqueeze(1)).float(), dim=1)
        scores = F.normalize(features.float(), dim=1) @ means.T
        scores[:, self.counts == 0] = float("-inf")
        return prediction_from_scores(scores)

    def state_dict(self) -> dict:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict):
        self.sums, self.counts = state["sums"].clone(), state["counts"].clone()

    def stats(self) -> dict:
        return {"classes_seen": int((self.counts > 0).sum()),
                "memory_bytes": self.sums.nelement() * self.sums.element_size()
                + self.counts.nelement() * self.counts.element_size()}
