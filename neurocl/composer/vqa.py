"""VQA-RAD questions answered by the memory: an (image, question) pair's fused concept embedding retrieves the
stored pairs nearest to it and their answers vote (the answers are the dataset's classes, so the memory's
answer is the answer); closed and open accuracy as the benchmark defines them (exact match after
normalisation), and every answer with the training questions behind it in qa.jsonl. An abstention answers
nothing and counts as wrong.
"""

from pathlib import Path

from neurocl.composer import qa_metrics
from neurocl.composer.qa import write_records
from neurocl.data.base import Splits
from neurocl.errors import ConfigError


class VQAAnswers:
    def check(self, splits: Splits):
        meta = splits.train.meta or [{}]
        if splits.modality != "image_text" or "answer_type" not in meta[0]:
            raise ConfigError("qa", "vqa", f"dataset {splits.name} holds no visual questions with answer types",
                              "use dataset=vqa_rad encoder=image_text with qa=vqa")

    def answer(self, composer, memory, prediction, splits: Splits, train_rows: list[int], output: Path) -> dict:
        train, test = splits.train, splits.test
        answers = composer.compose(memory, prediction, [train.ids[r] for r in train_rows])
        row_of = {train.ids[r]: r for r in train_rows}  # an answer's evidence, by sample id, back to its record
        records = []
        for i, (a, meta) in enumerate(zip(answers, test.meta)):
            records.append({
                "id": test.ids[i], "image": meta["image_name"], "question": test.data.texts[i],
                "answer_type": meta["answer_type"], "answer": "" if a.label is None else splits.class_names[a.label],
                "gold": meta["answer"], "confidence": a.confidence, "abstained": a.abstained, "reason": a.reason,
                "evidence": [{"id": source, "image": train.meta[row_of[source]]["image_name"],
                              "question": train.data.texts[row_of[source]],
                              "answer": train.meta[row_of[source]]["answer"]} for source in a.evidence.sources]})
        write_records(output, records)
        accuracy = qa_metrics.vqa_accuracy([r["answer"] for r in records], [r["gold"] for r in records],
                                           [r["answer_type"] for r in records])
        return {"questions": len(records), "abstained": sum(r["abstained"] for r in records), **accuracy}
