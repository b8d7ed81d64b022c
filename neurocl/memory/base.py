"""The memory contract: what the driver asks of every learner."""

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from neurocl.errors import DataError, NeuroclError, check_finite


@dataclass
class Prediction:
    labels: torch.Tensor     # (N,) int64; -1 where the memory abstained
    scores: torch.Tensor     # (N, num_classes); -inf for classes the memory cannot answer
    abstained: torch.Tensor  # (N,) bool
    evidence: dict = field(default_factory=dict)  # e.g. {"prototype_ids": (N, k)}

    @property
    def confidence(self) -> torch.Tensor:
        """(N,) the memory's own confidence (the winner's share of its evidence) where it reports one, else the
        softmax maximum of the scores; 0 where it cannot answer."""
        if "confidence" in self.evidence:
            return self.evidence["confidence"].float().nan_to_num(0.0)
        return torch.softmax(self.scores.float(), dim=1).max(dim=1).values.nan_to_num(0.0)

    @property
    def unknown(self) -> torch.Tensor:
        """(N,) how unlike everything learned each query is (higher: more likely a class never seen): the memory's
        own open-set score where it reports one, else 1 - confidence."""
        return self.evidence["unknown"].float() if "unknown" in self.evidence else 1.0 - self.confidence


class Memory(Protocol):
    """Everything the entry point and the driver may ask of a memory; `MemoryBase` gives the optional parts
    their defaults, so the entry point asks through this interface and never by name (no hasattr)."""

    learns_whole_experiences: bool  # True: the driver hands it whole Avalanche experiences (train_experience)
    exports_nir: bool               # True: to_nir() returns the trained network as a NIR graph
    resumable: bool                 # True: load_state_dict(state_dict()) continues exactly (checkpoint/resume)

    def observe(self, features: torch.Tensor, labels: torch.Tensor, experience: int,
                ids: torch.Tensor | None = None) -> None:
        """Learn from a batch; `ids` name the samples (rows of the training set), for evidence."""
    def train_experience(self, experience) -> None:
        """Learn one Avalanche experience with the memory's own training loop."""
    def end_experience(self) -> None:
        """The experience's last batch has been observed (or its train_experience has run): settle what the memory
        held back while it learned (e.g. samples held out to choose a readout). The driver calls it once per
        experience, before it evaluates and before it checkpoints."""
    def predict(self, features: torch.Tensor) -> Prediction:
        """Answer `features`; a read: the memory's state (state_dict) is the same afterwards."""
    def readouts(self) -> dict:
        """name -> predict function: every answer the memory can give, its own first."""
    def write_artifacts(self, output_dir: Path, queries: torch.Tensor, labels: torch.Tensor,
                        class_names: list[str], observed_samples: int) -> dict:
        """Write the memory's own plots into the run directory; returns what joins results.json."""
    def to_nir(self): ...
    def evidence_rows(self, prediction: Prediction, per_answer: int = 3,
                      labels: torch.Tensor | None = None) -> list[list[int]]:
        """Per query, the training rows that stand behind its answer (empty where the memory keeps none);
        with `labels`, the rows of the stored units near the query that hold that class instead (question
        answering asks for the evidence of a question's known type; a prototype holding several classes may
        return rows of others too)."""
    def state_dict(self) -> dict:
        """Everything load_state_dict needs to continue exactly; a read, like predict."""
    def load_state_dict(self, state: dict) -> None: ...
    def stats(self) -> dict: ...


class MemoryBase:
    """The defaults of the optional parts of `Memory`: a memory that learns from batches, answers with
    `predict` only, writes nothing beyond the run's own files and exports no network."""

    learns_whole_experiences = False
    exports_nir = False
    resumable = True

    def train_experience(self, experience) -> None:
        raise NeuroclError(f"{type(self).__name__} learns from batches (observe), not whole experiences.")

    def end_experience(self) -> None:
        """Nothing held back: every observed batch is learned as it comes."""

    def readouts(self) -> dict:
        return {"memory": self.predict}

    def write_artifacts(self, output_dir: Path, queries: torch.Tensor, labels: torch.Tensor,
                        class_names: list[str], observed_samples: int) -> dict:
        return {}

    def to_nir(self):
        raise NeuroclError(f"{type(self).__name__} is not a spiking network: it has no NIR graph.")

    def evidence_rows(self, prediction: Prediction, per_answer: int = 3, labels=None) -> list[list[int]]:
        return [[] for _ in range(len(prediction.labels))]


def prediction_from_scores(scores: torch.Tensor, evidence: dict | None = None) -> Prediction:
    """Argmax over the answerable classes; abstain where none is answerable."""
    abstained = ~torch.isfinite(scores).any(dim=1)
    labels = scores.argmax(dim=1).masked_fill(abstained, -1)
    return Prediction(labels, scores, abstained, evidence or {})


def warn_held_back(memory, samples: int):
    """A predict while observed samples wait for end_experience answers without them: say so (once per caller)."""
    if samples:
        warnings.warn(f"{type(memory).__name__}.predict: observed samples are held back until end_experience() "
                      "(the driver calls it after each experience's last batch); answers leave them out", stacklevel=3)


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
