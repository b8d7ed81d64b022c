"""Question-answering metrics as the benchmarks define them; answers compared after normalisation (lower case,
whitespace collapsed), gold answers given as synonym lists.

BioASQ (Tsatsaronis et al. 2015; the Task B evaluation measures):
- yes/no: accuracy, and macro-F1 over the classes "yes" and "no";
- factoid: up to 5 ranked candidates per question; strict accuracy = the first is a synonym of the gold answer,
  lenient accuracy = one of the five is, MRR = mean of 1 / rank of the first correct one (0 when none is);
- list: per question, precision = returned entries matching a gold entry / returned entries, recall = gold
  entries matched / gold entries (each matched once), F1 of the two; all three averaged over questions.
VQA-RAD: exact-match accuracy, separately over closed and open questions.
"""

import numpy as np


def normalise(text) -> str:
    return " ".join(str(text).lower().split())


def _matches(answer, synonyms) -> bool:
    return normalise(answer) in {normalise(s) for s in synonyms}


def yesno(predicted: list[str], gold: list[str]) -> dict:
    predicted, gold = [normalise(p) for p in predicted], [normalise(g) for g in gold]
    f1s = []
    for label in ("yes", "no"):
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": float(np.mean([p == g for p, g in zip(predicted, gold)])) if gold else float("nan"),
            "macro_f1": float(np.mean(f1s))}


def factoid(candidates: list[list[str]], gold: list[list[str]]) -> dict:
    """candidates: per question, ranked answers (the first 5 count); gold: per question, the synonyms."""
    ranks = []
    for ranked, synonyms in zip(candidates, gold):
        rank = next((i + 1 for i, c in enumerate(ranked[:5]) if _matches(c, synonyms)), None)
        ranks.append(rank)
    n = len(gold)
    if not n:
        return {"strict_accuracy": float("nan"), "lenient_accuracy": float("nan"), "mrr": float("nan")}
    return {"strict_accuracy": sum(r == 1 for r in ranks) / n, "lenient_accuracy": sum(r is not None for r in ranks) / n,
            "mrr": sum(1 / r for r in ranks if r) / n}


def list_answers(predicted: list[list[str]], gold: list[list[list[str]]]) -> dict:
    """predicted: per question, the returned entries; gold: per question, its entries, each a synonym list."""
    precision, recall, f1 = [], [], []
    for returned, entries in zip(predicted, gold):
        returned = list(dict.fromkeys(normalise(r) for r in returned))  # an entry said twice counts once
        matched = {i for i, synonyms in enumerate(entries) if any(_matches(r, synonyms) for r in returned)}
        right = sum(any(_matches(r, synonyms) for synonyms in entries) for r in returned)
        p = right / len(returned) if returned else 0.0
        r = len(matched) / len(entries) if entries else 0.0
        precision.append(p), recall.append(r), f1.append(2 * p * r / (p + r) if p + r else 0.0)
    mean = lambda values: float(np.mean(values)) if values else float("nan")
    return {"precision": mean(precision), "recall": mean(recall), "f1": mean(f1)}


def vqa_accuracy(predicted: list[str], gold: list[str], answer_types: list[str]) -> dict:
    """Exact-match accuracy over closed and open questions separately, and overall."""
    hit = np.array([normalise(p) == normalise(g) for p, g in zip(predicted, gold)], dtype=float)
    types = np.array([t.upper() for t in answer_types])
    part = lambda mask: float(hit[mask].mean()) if mask.any() else float("nan")
    return {"closed_accuracy": part(types == "CLOSED"), "open_accuracy": part(types == "OPEN"),
            "accuracy": part(np.ones(len(hit), bool))}
