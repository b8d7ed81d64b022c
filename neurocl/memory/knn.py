"""k nearest neighbours over every stored feature: the unbounded-memory reference."""

import torch
import torch.nn.functional as F

from neurocl.errors import ConfigError, DataError
from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores


class KNN(MemoryBase):
    """Cosine kNN with a majority vote; ties go to the class with the larger summed similarity."""

    def __init__(self, dim: int, num_classes: int, k: int = 10, precision: str = "float32",
                 chunk_size: int = 16384):
        if not isinstance(k, int) or k < 1:
            raise ConfigError("memory.k", k, "must be a positive integer", "set memory.k=10")
        if precision not in ("float32", "float16"):
            raise ConfigError("memory.precision", precision, "must be float32 or float16", "set memory.precision=float32")
        self.dim, self.num_classes, self.k, self.chunk_size = dim, num_classes, k, chunk_size
        self.dtype = getattr(torch, precision)
        self.parts, self.label_parts, self.id_parts = [], [], []  # id: the sample's training row (evidence)

    def _stored(self):
        if len(self.parts) > 1:  # concatenate once, not on every prediction
            self.parts, self.label_parts = [torch.cat(self.parts)], [torch.cat(self.label_parts)]
            self.id_parts = [torch.cat(self.id_parts)]
        if not self.parts:
            return torch.empty(0, self.dim, dtype=self.dtype), torch.empty(0, dtype=torch.long)
        return self.parts[0], self.label_parts[0]

    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        self.parts.append(F.normalize(features.float(), dim=1).to(self.dtype))
        self.label_parts.append(labels.clone())
        ids = torch.full_like(labels, -1) if ids is None else torch.as_tensor(ids, dtype=torch.long)
        if ids.shape != labels.shape:
            raise DataError(f"{len(ids)} sample ids for {len(labels)} samples. Fix: pass one id per sample (or none).")
        self.id_parts.append(ids)

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        stored, labels = self._stored()
        scores = torch.full((len(features), self.num_classes), float("-inf"))
        if not len(stored):
            return prediction_from_scores(scores)
        query = F.normalize(features.float(), dim=1)
        k = min(self.k, len(stored))
        best_sim = torch.full((len(query), k), float("-inf"))
        best_idx = torch.zeros(len(query), k, dtype=torch.long)
        for start in range(0, len(stored), self.chunk_size):  # bounded memory: (N, chunk) at a time
            sims = query @ stored[start:start + self.chunk_size].float().T
            sim, idx = torch.cat([best_sim, sims], dim=1).topk(k, dim=1)
            candidates = torch.cat([best_idx, torch.arange(start, start + sims.shape[1]).expand(len(query), -1)], dim=1)
            best_sim, best_idx = sim, candidates.gather(1, idx)
        neighbour_labels = labels[best_idx]
        votes = torch.zeros(len(query), self.num_classes).scatter_add_(1, neighbour_labels, torch.ones_like(best_sim))
        summed = torch.zeros(len(query), self.num_classes).scatter_add_(1, neighbour_labels, best_sim)
        seen = torch.bincount(labels, minlength=self.num_classes) > 0
        scores[:, seen] = (votes + summed / (k + 1))[:, seen]  # summed/(k+1) < 1: only breaks ties
        return prediction_from_scores(scores, {"neighbour_ids": best_idx})

    def evidence_rows(self, prediction: Prediction, per_answer: int = 3, labels=None) -> list[list[int]]:
        """The nearest stored samples of the answered class (or `labels`), nearest first, as training rows."""
        if "neighbour_ids" not in prediction.evidence:
            return super().evidence_rows(prediction, per_answer)
        stored_labels, rows = self._stored()[1], self.id_parts[0]
        labels = prediction.labels if labels is None else labels
        out = []
        for label, neighbours in zip(labels.tolist(), prediction.evidence["neighbour_ids"].tolist()):
            held = [int(rows[n]) for n in neighbours if stored_labels[n] == label and rows[n] >= 0]
            out.append(held[:per_answer])
        return out

    def state_dict(self) -> dict:
        stored, labels = self._stored()
        ids = self.id_parts[0] if self.id_parts else torch.empty(0, dtype=torch.long)
        return {"features": stored.clone(), "labels": labels.clone(), "ids": ids.clone()}

    def load_state_dict(self, state: dict):
        self.parts, self.label_parts = [state["features"].to(self.dtype)], [state["labels"].clone()]
        self.id_parts = [state.get("ids", torch.full_like(state["labels"], -1)).clone()]  # older: no sample ids

    def stats(self) -> dict:
        stored, labels = self._stored()  # labels and their sample ids: two int64 per sample
        return {"stored_samples": len(labels),
                "memory_bytes": stored.nelement() * stored.element_size() + 2 * labels.nelement() * labels.element_size()}
