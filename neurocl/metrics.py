"""Continual-learning metrics: pure functions of the accuracy matrix R and of predictions.

R[t, k] is the accuracy on experience k's test set after training through
experience t (t, k = 0..T, T the last). Frameworks disagree on forgetting, so
both common definitions are here, each named after its source:

- A_last = mean_k R[T, k]
- Abar (average incremental accuracy) = mean_t ( mean_{k<=t} R[t, k] )
- forgetting, Chaudhry et al. 2018 = mean_{k<T} ( max_{l<T} R[l, k] - R[T, k] )
- forgetting, Avalanche = mean_{k<T} ( R[k, k] - R[T, k] )
- BWT, GEM (Lopez-Paz & Ranzato 2017) = mean_{k<T} ( R[T, k] - R[k, k] )
- FWT, GEM = mean_{k>0} ( R[k-1, k] - b_k ), b_k = accuracy of the untrained
  memory on experience k.

Online streams add an anytime curve a_1..a_P, the accuracy at each of P
evaluations during the stream: A_auc = mean_j a_j (Koh et al., ICLR 2022), and
anytime forgetting = mean_c ( max_{j<P} a_{j,c} - a_{P,c} ) over classes c.
"""

import numpy as np


def _square(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"R must be a non-empty square matrix, got shape {R.shape}")
    return R


def accuracy_last(R) -> float:
    return float(_square(R)[-1].mean())


def average_incremental_accuracy(R) -> float:
    R = _square(R)
    return float(np.mean([R[t, : t + 1].mean() for t in range(len(R))]))


def forgetting_chaudhry(R) -> float:
    R = _square(R)
    if len(R) == 1:
        return 0.0
    return float((R[:-1, :-1].max(axis=0) - R[-1, :-1]).mean())


def forgetting_avalanche(R) -> float:
    R = _square(R)
    if len(R) == 1:
        return 0.0
    return float((np.diag(R)[:-1] - R[-1, :-1]).mean())


def backward_transfer(R) -> float:
    return -forgetting_avalanche(R)


def forward_transfer(R, untrained) -> float:
    R = _square(R)
    b = np.asarray(untrained, dtype=float)
    if b.shape != (len(R),):
        raise ValueError(f"untrained accuracies must have length {len(R)}, got shape {b.shape}")
    if len(R) == 1:
        return 0.0
    return float(np.mean([R[k - 1, k] - b[k] for k in range(1, len(R))]))


def forgetting_matrix(R) -> np.ndarray:
    """F[t, k] = max_{l<t} R[l, k] - R[t, k] for k < t: Chaudhry forgetting of k after step t; NaN elsewhere."""
    R = _square(R)
    F = np.full_like(R, np.nan)
    for t in range(1, len(R)):
        F[t, :t] = R[:t, :t].max(axis=0) - R[t, :t]
    return F


def transfer_matrix(R, untrained) -> np.ndarray:
    """Tr[t, k]: backward transfer R[t, k] - R[k, k] below the diagonal (t > k),
    forward transfer R[t, k] - b_k on and above it (t <= k)."""
    R = _square(R)
    b = np.asarray(untrained, dtype=float)
    Tr = R - b[None, :]
    for t in range(len(R)):
        Tr[t, :t] = R[t, :t] - np.diag(R)[:t]
    return Tr


def accuracy(predicted, targets) -> float:
    """Share of correct predictions; an abstention (label -1) counts as wrong."""
    predicted, targets = np.asarray(predicted), np.asarray(targets)
    return float((predicted == targets).mean()) if len(targets) else float("nan")


def per_class_accuracy(predicted, targets, num_classes: int) -> np.ndarray:
    """Accuracy on the samples of each class; NaN for classes without samples."""
    predicted, targets = np.asarray(predicted), np.asarray(targets)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = targets == c
        if mask.any():
            out[c] = (predicted[mask] == c).mean()
    return out


# --- answers: what a composer's answers are scored by (an abstention is label -1) --------------------------------

def top_k_accuracy(scores, targets, k: int) -> float:
    """Share of queries whose target is among the k highest scores (ties broken by class order)."""
    scores, targets = np.asarray(scores, float), np.asarray(targets)
    if not len(targets):
        return float("nan")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def confusion_matrix(predicted, targets, num_classes: int) -> np.ndarray:
    """(C, C + 1) counts: row = true class, column = answer; the last column counts abstentions."""
    predicted, targets = np.asarray(predicted), np.asarray(targets)
    matrix = np.zeros((num_classes, num_classes + 1), np.int64)
    np.add.at(matrix, (targets, np.where(predicted < 0, num_classes, predicted)), 1)
    return matrix


def precision_recall_f1(predicted, targets, num_classes: int) -> dict:
    """Per class, from the confusion matrix: precision over the answers given (abstentions are no answer),
    recall over the class's queries (an abstention misses); NaN where undefined. macro_f1: mean over the classes
    that have queries, an undefined F1 counting 0."""
    matrix = confusion_matrix(predicted, targets, num_classes).astype(float)
    hits, answered, queries = np.diag(matrix), matrix[:, :num_classes].sum(axis=0), matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = hits / answered, hits / queries
        f1 = 2 * precision * recall / (precision + recall)
    present = queries > 0
    return {"precision": precision, "recall": recall, "f1": f1,
            "macro_f1": float(np.nan_to_num(f1[present]).mean()) if present.any() else float("nan")}


def selective(predicted, targets) -> dict:
    """coverage: share of queries answered; selective_accuracy: accuracy on the answered ones (NaN if none)."""
    predicted, targets = np.asarray(predicted), np.asarray(targets)
    answered = predicted >= 0
    return {"coverage": float(answered.mean()) if len(targets) else float("nan"),
            "selective_accuracy": float((predicted[answered] == targets[answered]).mean()) if answered.any()
            else float("nan")}


def risk_coverage_curve(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) when answering the n most confident queries, n = 1..N; its mean risk is the AURC."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    order = np.argsort(-confidence, kind="stable")
    n = np.arange(1, len(order) + 1)
    return n / max(len(order), 1), np.cumsum(1.0 - correct[order]) / n


def summary(R, untrained) -> dict:
    """Every scalar metric of R, under the names used in results.json."""
    return {
        "A_last": accuracy_last(R),
        "Abar": average_incremental_accuracy(R),
        "forgetting_chaudhry": forgetting_chaudhry(R),
        "forgetting_avalanche": forgetting_avalanche(R),
        "BWT": backward_transfer(R),
        "FWT": forward_transfer(R, untrained),
    }


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| per equal-width confidence bin, weighted by bin size."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if len(confidence) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        member = which == b
        if member.any():
            gap += member.mean() * abs(correct[member].mean() - confidence[member].mean())
    return float(gap)


def risk_coverage(confidence, correct, coverage: float = 0.8) -> dict:
    """Selective prediction: answer only the most confident queries (abstain on the rest).

    aurc: area under the risk-coverage curve (lower is better); selective_accuracy: accuracy on the
    `coverage` share of queries with the highest confidence (ties by order).
    """
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if len(confidence) == 0:
        return {"aurc": 0.0, f"accuracy_at_{coverage:g}_coverage": 0.0}
    order = np.argsort(-confidence, kind="stable")
    risk = risk_coverage_curve(confidence, correct)[1]
    keep = max(1, int(round(coverage * len(order))))
    return {"aurc": float(risk.mean()), f"accuracy_at_{coverage:g}_coverage": float(correct[order[:keep]].mean())}


# --- multi-label: per-label scores against 0/1 targets; a target below 0 is unknown (MIMIC-CXR's uncertain
# labels under uncertain=ignore) and is left out -------------------------------------------------------------

def known(scores, targets):
    scores, targets = np.asarray(scores, float), np.asarray(targets)
    keep = targets >= 0
    return scores[keep], targets[keep].astype(bool)


def auroc(scores, targets) -> float:
    """Area under the ROC curve of `scores` for binary `targets` (Mann-Whitney U, ties count one half);
    NaN when the targets hold one class only."""
    scores, targets = known(scores, targets)
    positives, negatives = targets.sum(), (~targets).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[targets].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def f1(predicted, targets) -> float:
    """F1 of binary predictions; 0 when there is nothing to find and nothing found is not defined: NaN."""
    predicted, targets = known(predicted, targets)
    predicted = predicted.astype(bool)
    tp = (predicted & targets).sum()
    denominator = predicted.sum() + targets.sum()
    return float(2 * tp / denominator) if denominator else float("nan")


def best_threshold(scores, targets) -> float:
    """The threshold on `scores` (predict positive when score >= it) that maximises F1 on these samples."""
    scores, targets = known(scores, targets)
    if not targets.any():
        return float("inf")
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(targets[order])
    f1s = 2 * hits / (np.arange(1, len(scores) + 1) + targets.sum())
    last_of_tie = np.r_[np.diff(scores[order]) != 0, True]  # a threshold cannot split equal scores
    return float(scores[order][np.flatnonzero(last_of_tie)[np.argmax(f1s[last_of_tie])]])


def area_under_accuracy(accuracy) -> float:
    """A_auc (Koh et al., ICLR 2022): the mean of the anytime accuracies, evaluated at equal sample intervals
    (i-Blurry's `np.mean` of its anytime evaluations)."""
    return float(np.mean(accuracy)) if len(accuracy) else float("nan")


def anytime_forgetting(per_class_accuracy) -> float:
    """Forgetting on the anytime curve: per class, its best accuracy at an earlier evaluation minus its accuracy at
    the last, averaged over the classes evaluated both before and at the last evaluation (NaN: not evaluated)."""
    curve = np.asarray(per_class_accuracy, dtype=float)
    if len(curve) < 2:
        return float("nan")
    earlier, last = curve[:-1], curve[-1]
    counted = ~np.isnan(last) & ~np.isnan(earlier).all(axis=0)
    if not counted.any():
        return float("nan")
    return float(np.mean(np.nanmax(earlier[:, counted], axis=0) - last[counted]))


def anytime_summary(accuracy, per_class_accuracy) -> dict:
    """The online stream's metrics from its anytime curve: A_auc, the last anytime accuracy, anytime forgetting."""
    return {"A_auc": area_under_accuracy(accuracy), "A_last_anytime": float(accuracy[-1]) if len(accuracy) else
            float("nan"), "forgetting_anytime": anytime_forgetting(per_class_accuracy)}
