"""QA metrics against hand-computed examples, edge cases included (empty answers, synonym lists)."""

import math

import pytest

from neurocl.composer import qa_metrics as qa


def test_yesno_accuracy_and_macro_f1_by_hand():
    out = qa.yesno(["yes", "Yes ", "no", "yes"], ["yes", "no", "no", "yes"])
    # yes: tp 2, fp 1, fn 0 -> F1 4/5; no: tp 1, fp 0, fn 1 -> F1 2/3
    assert out["accuracy"] == 0.75 and out["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert qa.yesno(["yes", "yes"], ["yes", "yes"])["macro_f1"] == 0.5  # "no" never occurs: its F1 is 0
    assert math.isnan(qa.yesno([], [])["accuracy"])


def test_factoid_strict_lenient_and_mrr_by_hand():
    gold = [["BRAF", "B-Raf"], ["TNF"], ["p53"]]
    candidates = [["b-raf", "KRAS"],                      # rank 1 through a synonym, any case
                  ["IL6", "IL1", "TNF"],                  # rank 3
                  ["a", "b", "c", "d", "e", "p53"]]       # 6th: beyond the five that count
    out = qa.factoid(candidates, gold)
    assert out == {"strict_accuracy": 1 / 3, "lenient_accuracy": 2 / 3, "mrr": pytest.approx((1 + 1 / 3) / 3)}
    assert qa.factoid([[]], [["x"]])["mrr"] == 0.0  # no answer at all


def test_list_precision_recall_f1_by_hand():
    gold = [[["BRAF", "B-Raf"], ["KRAS"], ["NRAS"]]]
    out = qa.list_answers([["braf", "B-Raf", "KRAS", "EGFR"]], gold)
    # returned (deduplicated): braf, b-raf, kras, egfr -> 3 right of 4; gold entries matched: BRAF, KRAS -> 2 of 3
    assert out["precision"] == 0.75 and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    empty = qa.list_answers([[]], gold)
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_vqa_closed_and_open_accuracy():
    out = qa.vqa_accuracy(["yes", "Left lung", "no", "brain"], ["yes", "left  lung", "yes", "liver"],
                          ["CLOSED", "OPEN", "closed", "OPEN"])
    assert out == {"closed_accuracy": 0.5, "open_accuracy": 0.5, "accuracy": 0.5}
    assert math.isnan(qa.vqa_accuracy(["yes"], ["yes"], ["CLOSED"])["open_accuracy"])
