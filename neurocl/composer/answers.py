"""Answers with typed evidence, abstention policies, and the metrics of answers.

A memory's `Prediction` holds scores and an evidence dict (prototype ids and similarities for the store, label
spike counts for the spiking memory, nothing for the others). The composer reads it into one `Answer` per query:
label, confidence, top-k labels, whether it abstained and why, and the `Evidence` behind it, resolved to the
source ids of the training samples (file, report id, page, row).

A policy decides abstention from the prediction alone (vectorised: it sees every query at once):
- KeepMemoryAnswers: abstain only where the memory itself does (no class answerable);
- ScoreThreshold: confidence below `threshold`;
- Margin: the top two answers' shares closer than `margin`;
- LabelSpikes: the winning label neuron fired fewer than `min_spikes` spikes (spiking memories);
- TargetCoverage: a confidence threshold fitted on training queries so that a `coverage` share is answered;
- Unknown: the open-set score above what `retain` of held-out training queries reach (never learned: abstain).
"""

from dataclasses import dataclass

import numpy as np
import torch

from neurocl import metrics
from neurocl.errors import ConfigError
from neurocl.memory.base import Memory, Prediction


@dataclass(frozen=True)
class Evidence:
    prototype_ids: tuple[int, ...] = ()      # the memory's nearest prototypes (store and spiking memory)
    similarities: tuple[float, ...] = ()     # their similarity to the query, in the same order
    sources: tuple[str, ...] = ()            # the training samples behind the answer, by source id


@dataclass(frozen=True)
class Answer:
    label: int | None                        # None: abstained
    confidence: float                        # the memory's own confidence, else the softmax maximum
    top_k: tuple[int, ...]                   # best first, answerable classes only
    abstained: bool
    reason: str | None                       # why it abstained
    evidence: Evidence


class KeepMemoryAnswers:
    """No abstention beyond the memory's own."""

    reason = None
    needs_fit = False  # True: fit() must see the memory's answers to training queries first

    def fit(self, prediction: Prediction):
        pass

    def abstain(self, prediction: Prediction) -> torch.Tensor:
        return torch.zeros(len(prediction.labels), dtype=torch.bool)


class ScoreThreshold(KeepMemoryAnswers):
    def __init__(self, threshold: float = 0.5):
        if not 0 <= threshold <= 1:
            raise ConfigError("composer.policy.threshold", threshold, "must be in [0, 1]",
                              "set composer.policy.threshold=0.5")
        self.threshold = threshold
        self.reason = f"confidence below {threshold:g}"

    def abstain(self, prediction):
        return prediction.confidence < self.threshold


class Margin(KeepMemoryAnswers):
    def __init__(self, margin: float = 0.1):
        if not 0 <= margin <= 1:
            raise ConfigError("composer.policy.margin", margin, "must be in [0, 1]", "set composer.policy.margin=0.1")
        self.margin = margin
        self.reason = f"top two answers within {margin:g}"

    def abstain(self, prediction):
        shares = torch.softmax(prediction.scores.float(), dim=1).nan_to_num(0.0)
        top = shares.topk(min(2, shares.shape[1]), dim=1).values
        gap = top[:, 0] - (top[:, 1] if top.shape[1] > 1 else 0)
        return gap < self.margin


class LabelSpikes(KeepMemoryAnswers):
    def __init__(self, min_spikes: int = 1):
        if min_spikes < 0:
            raise ConfigError("composer.policy.min_spikes", min_spikes, "must be 0 or more",
                              "set composer.policy.min_spikes=1")
        self.min_spikes = min_spikes
        self.reason = f"winning label neuron fired fewer than {min_spikes} spikes"

    def abstain(self, prediction):
        if "winner_spikes" not in prediction.evidence:
            raise ConfigError("composer", "LabelSpikes", "the memory reports no label spikes",
                              "use memory=prototypes_snn, or another composer policy")
        return prediction.evidence["winner_spikes"] < self.min_spikes


class TargetCoverage(KeepMemoryAnswers):
    """Calibrated on training queries only: the threshold is the confidence that a `coverage` share exceeds."""

    needs_fit = True

    def __init__(self, coverage: float = 0.9):
        if not 0 < coverage <= 1:
            raise ConfigError("composer.policy.coverage", coverage, "must be in (0, 1]",
                              "set composer.policy.coverage=0.9")
        self.coverage, self.threshold = coverage, None
        self.reason = f"confidence below the {coverage:g}-coverage threshold"

    def fit(self, prediction):
        confidence = prediction.confidence.double().numpy()
        self.threshold = float(np.quantile(confidence, 1 - self.coverage)) if len(confidence) else 0.0

    def abstain(self, prediction):
        if self.threshold is None:
            raise ConfigError("composer", "TargetCoverage", "was not fitted on training queries",
                              "call Composer.fit with the memory's answers on training data first")
        return prediction.confidence < self.threshold


class Unknown(KeepMemoryAnswers):
    """Open set: abstain on queries unlike everything learned. The threshold is the unknown score (Prediction.unknown)
    below which a `retain` share of held-out training queries of the classes learned falls: those are answered,
    anything farther from what the memory learned is not."""

    needs_fit = True

    def __init__(self, retain: float = 0.95):
        if not 0 < retain <= 1:
            raise ConfigError("composer.policy.retain", retain, "must be in (0, 1]", "set composer.policy.retain=0.95")
        self.retain, self.threshold = retain, None
        self.reason = f"unlike anything learned (unknown score above the {retain:g}-retention threshold)"

    def fit(self, prediction):
        unknown = prediction.unknown.double().numpy()
        self.threshold = float(np.quantile(unknown, self.retain)) if len(unknown) else float("inf")

    def abstain(self, prediction):
        if self.threshold is None:
            raise ConfigError("composer", "Unknown", "was not fitted on training queries",
                              "call Composer.fit with the memory's answers on training data first")
        return prediction.unknown > self.threshold


class Composer:
    """Reads predictions into answers under an abstention policy; `top_k` labels per answer."""

    def __init__(self, policy=None, top_k: int = 3, evidence_per_answer: int = 3):
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError("composer.top_k", top_k, "must be a positive integer", "set composer.top_k=3")
        self.policy = policy or KeepMemoryAnswers()
        self.top_k, self.evidence_per_answer = top_k, evidence_per_answer

    def fit(self, prediction: Prediction):
        """Calibrate the policy on the memory's answers to training queries (never test ones)."""
        self.policy.fit(prediction)

    def decide(self, prediction: Prediction) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels with -1 where abstained, abstained) for every query at once."""
        abstained = prediction.abstained | self.policy.abstain(prediction)
        return prediction.labels.masked_fill(abstained, -1), abstained

    def compose(self, memory: Memory, prediction: Prediction, train_ids: list[str]) -> list[Answer]:
        """One Answer per query, its evidence resolved to the source ids of the training samples."""
        labels, abstained = self.decide(prediction)
        confidence = prediction.confidence
        scores = prediction.scores
        top = scores.topk(min(self.top_k, scores.shape[1]), dim=1)
        rows = memory.evidence_rows(prediction, self.evidence_per_answer)
        ids = prediction.evidence.get("prototype_ids")
        sims = prediction.evidence.get("prototype_similarities")
        answers = []
        for i in range(len(labels)):
            reason = None
            if prediction.abstained[i]:
                reason = "the memory can answer no class"
            elif abstained[i]:
                reason = self.policy.reason
            evidence = Evidence(tuple(ids[i].tolist()) if ids is not None else (),
                                tuple(round(float(s), 4) for s in sims[i]) if sims is not None else (),
                                tuple(train_ids[r] for r in rows[i]))
            answers.append(Answer(None if abstained[i] else int(labels[i]), round(float(confidence[i]), 4),
                                  tuple(int(c) for c, v in zip(top.indices[i], top.values[i]) if torch.isfinite(v)),
                                  bool(abstained[i]), reason, evidence))
        return answers


def answer_metrics(composer: Composer, prediction: Prediction, targets: torch.Tensor, num_classes: int,
                   k: int = 3) -> dict:
    """Coverage, selective accuracy, risk-coverage (AURC), calibration (ECE), top-k accuracy, per-class
    precision/recall/F1, macro-F1 and the confusion matrix (last column: abstentions) of the composed answers."""
    labels, _ = composer.decide(prediction)
    labels, targets = labels.numpy(), targets.numpy()
    confidence = prediction.confidence.double().numpy()
    correct = prediction.labels.numpy() == targets
    scores = prediction.scores.double().nan_to_num(nan=-1e30, neginf=-1e30, posinf=1e30).numpy()
    prf = metrics.precision_recall_f1(labels, targets, num_classes)
    return {**metrics.selective(labels, targets), "accuracy": metrics.accuracy(labels, targets),
            "aurc": metrics.risk_coverage(confidence, correct)["aurc"],
            "ece": metrics.expected_calibration_error(confidence, correct),
            f"top_{k}_accuracy": metrics.top_k_accuracy(scores, targets, k), "macro_f1": prf["macro_f1"],
            "per_class": {"precision": prf["precision"], "recall": prf["recall"], "f1": prf["f1"]},
            "confusion_matrix": metrics.confusion_matrix(labels, targets, num_classes)}
