"""Yes/no questions about held-out reports, answered from the evidence the memory stored while it learned.

The questions are derived from the dataset's own labels, not written by people: for every class ("MeSH term")
c and every held-out report r, "Is there <c>?" about r has the gold answer "yes" when r's label is c. They are
balanced per term: all the term's held-out reports (gold "yes") and as many reports of other terms (gold "no"),
drawn with a fixed seed. The memory answers "yes" when its own answer for r is c and it did not abstain; the
answer carries the training reports behind the memory's answer as evidence.
"""

from pathlib import Path

import numpy as np
import torch

from neurocl.composer import qa_metrics
from neurocl.composer.qa import write_records
from neurocl.data.base import Splits
from neurocl.errors import ConfigError


def phrase(term: str) -> str:
    return "Is the study normal?" if term.lower() == "normal" else f"Is there {term.lower()}?"


class YesNoQuestions:
    def __init__(self, per_term: int | None = None, seed: int = 0):
        if per_term is not None and (not isinstance(per_term, int) or per_term < 1):
            raise ConfigError("qa.per_term", per_term, "must be null (every held-out report) or a positive integer",
                              "set qa.per_term=null")
        self.per_term, self.seed = per_term, seed

    def questions(self, labels: torch.Tensor, class_names: list[str]) -> list[dict]:
        """Balanced questions per term: {"row", "term", "gold"} with rows into the held-out (test) split."""
        rng = np.random.default_rng(self.seed)
        labels = labels.numpy()
        out = []
        for c, term in enumerate(class_names):
            yes = np.flatnonzero(labels == c)
            no = np.flatnonzero(labels != c)
            if self.per_term is not None:
                yes = rng.permutation(yes)[: self.per_term]
            no = rng.choice(no, size=min(len(yes), len(no)), replace=False)
            out += [{"row": int(r), "term": c, "gold": "yes"} for r in sorted(yes)]
            out += [{"row": int(r), "term": c, "gold": "no"} for r in sorted(no)]
        return out

    def check(self, splits: Splits):
        """Any single-label dataset: the questions come from its labels."""

    def answer(self, composer, memory, prediction, splits: Splits, train_rows: list[int], output: Path) -> dict:
        """Answer every question from the memory's answers to the held-out reports (`prediction`, one row per
        report); write qa.jsonl (question, report, answer, gold, evidence reports) and return the metrics."""
        class_names, test_ids = splits.class_names, splits.test.ids
        answers = composer.compose(memory, prediction, [splits.train.ids[r] for r in train_rows])
        records = []
        for q in self.questions(splits.test.labels, class_names):
            a = answers[q["row"]]
            said = "yes" if a.label == q["term"] else "no"
            records.append({"question": phrase(class_names[q["term"]]), "report": test_ids[q["row"]],
                            "term": class_names[q["term"]], "answer": said, "gold": q["gold"],
                            "memory_answer": None if a.label is None else class_names[a.label],
                            "abstained": a.abstained, "evidence": list(a.evidence.sources)})
        write_records(output, records)
        per_term = {}
        for term in class_names:
            mine = [r for r in records if r["term"] == term]
            per_term[term] = {"questions": len(mine), **qa_metrics.yesno([r["answer"] for r in mine],
                                                                         [r["gold"] for r in mine])}
        overall = qa_metrics.yesno([r["answer"] for r in records], [r["gold"] for r in records])
        return {"questions": len(records), **overall,
                "mean_term_accuracy": float(np.mean([t["accuracy"] for t in per_term.values()])),
                "per_term": per_term, "derived_from": "the dataset's labels (one question per term and report)"}
