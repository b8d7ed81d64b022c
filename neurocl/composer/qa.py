"""The contract of question answering after the stream (conf/qa/): the entry point asks through it only.

A QA task reads the final memory's answers to the held-out samples (`prediction`, one row per test sample,
on the clean features) and the dataset's own question records (`Split.meta`), answers in the benchmark's
format, writes every answer with its evidence to qa.jsonl and returns the benchmark's metrics.
"""

import json
from pathlib import Path
from typing import Protocol

from neurocl.data.base import Splits
from neurocl.io import atomic_path
from neurocl.memory.base import Memory, Prediction


class QuestionAnswering(Protocol):
    def check(self, splits: Splits) -> None:
        """Raise a ConfigError naming the fix when the dataset holds nothing this task can ask (before encoding)."""

    def answer(self, composer, memory: Memory, prediction: Prediction, splits: Splits, train_rows: list[int],
               output: Path) -> dict:
        """`train_rows[i]`: the row of splits.train that the memory saw as training row i (a validation
        carve-out leaves gaps). Writes `output` (JSONL), returns the metrics."""


def write_records(output: Path, records: list[dict]):
    with atomic_path(output) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
