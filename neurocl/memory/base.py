"""The memory contract: what the driver asks of every learner."""

from dataclasses import dataclass, field
from typing import Protocol

import torch

from neurocl.errors import DataError, check_finite


@dataclass
class Prediction:
    labels: torch.Tensor     # (N,) int64; -1 where the memory abstained
    scores: torch.Tensor     # (N, num_classes); -inf for classes the memory cannot answer
    abstained: torch.Tensor  # (N,) bool
    evidence: dict = field(default_factory=dict)  # e.g. {"prototype_ids": (N, k)}


class Memory(Protocol):
    def observe(self, features: torch.Tensor, labels: torch.Tensor, experience: int,
                ids: torch.Tensor | None = None) -> None:
        """Learn from a batch; `ids` name the samples (rows of the training set), for evidence."""
    def predict(self, features: torch.Tensor) -> Prediction: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def stats(self) -> dict: ...


def prediction_from_scores(scores: torch.Tensor, evidence: dict | None = None) -> Prediction:
    """Argmax over the answerable classes; abstain where none is answerable."""
    abstained = ~torch.isfinite(scores).any(dim=1)
    labels = scores.argmax(dim=1).masked_fill(abstained, -1)
    return Prediction(labels, scores, abstained, evidence or {})


def check_batch(features: torch.Tensor, dim: int, labels: torch.Tensor | None = None, num_classes: int = 0):
    """Validate a batch before it reaches a memory: shape, finiteness, label range."""
    if features.ndim != 2 or features.shape[1] != dim:
        raise DataError(f"features have shape {tuple(features.shape)}, the memory expects (N, {dim}). "
                        "Fix: use the encoder the memory was built for, or rebuild the memory.")
    check_finite(features, "features")
    if labels is not None:
        if labels.shape != (features.shape[0],):
            raise DataError(f"{features.shape[0]} features but labels of shape {tuple(labels.shape)}.")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"labels outside [0, {num_classes}): min {labels.min()}, max {labels.max()}. "
                            "Fix: check the dataset's label files.")
