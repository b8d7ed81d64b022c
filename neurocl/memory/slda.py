"""Streaming linear discriminant analysis: class means and one shared covariance.

Deep SLDA (Hayes & Kanan, 2020) updates the covariance one sample at a time;
here a batch updates exact running sums (per-class sums, counts and the
second-moment matrix), from which the pooled within-class covariance is

    Sigma = (sum_i x_i x_i^T - sum_c n_c mu_c mu_c^T) / N

and the classifier, with shrinkage eps,

    Lambda = ((1 - eps) Sigma + eps I)^-1,   score_c(x) = x^T Lambda mu_c - mu_c^T Lambda mu_c / 2.

The result does not depend on the order or the batching of the stream.
"""

import torch

from neurocl.errors import ConfigError
from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores


class StreamingLDA(MemoryBase):
    def __init__(self, dim: int, num_classes: int, shrinkage: float = 1e-4):
        if not 0 < shrinkage <= 1:
            raise ConfigError("memory.shrinkage", shrinkage, "must be in (0, 1]", "set memory.shrinkage=1e-4")
        self.dim, self.num_classes, self.shrinkage = dim, num_classes, shrinkage
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.second_moment = torch.zeros(dim, dim, dtype=torch.float64)
        self._classifier = None  # (weights, bias), rebuilt after new data

    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        x = features.double()
        self.sums.index_add_(0, labels, x)
        self.counts += torch.bincount(labels, minlength=self.num_classes).double()
        self.second_moment += x.T @ x
        self._classifier = None

    def covariance(self) -> torch.Tensor:
        seen = self.counts > 0
        means = self.sums[seen] / self.counts[seen, None]
        between = (means * self.counts[seen, None]).T @ means
        return (self.second_moment - between) / self.counts.sum().clamp(min=1)

    def classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._classifier is None:
            eye = torch.eye(self.dim, dtype=torch.float64)
            precision_input = (1 - self.shrinkage) * self.covariance() + self.shrinkage * eye
            means = self.sums / self.counts.clamp(min=1)[:, None]
            weights = torch.linalg.solve(precision_input, means.T)  # Lambda mu_c, one column per class
            bias = -0.5 * (means.T * weights).sum(dim=0)
            self._classifier = (weights.float(), bias.float())
        return self._classifier

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        weights, bias = self.classifier()
        scores = features.float() @ weights + bias
        scores[:, self.counts == 0] = float("-inf")
        return prediction_from_scores(scores)

    def state_dict(self) -> dict:
        return {"sums": self.sums.clone(), "counts": self.counts.clone(), "second_moment": self.second_moment.clone()}

    def load_state_dict(self, state: dict):
        self.sums, self.counts = state["sums"].clone(), state["counts"].clone()
        self.second_moment = state["second_moment"].clone()
        self._classifier = None

    def stats(self) -> dict:
        return {"classes_seen": int((self.counts > 0).sum()),
                "memory_bytes": sum(t.nelement() * t.element_size()
                                    for t in (self.sums, self.counts, self.second_moment))}
