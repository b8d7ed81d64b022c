"""BioASQ questions answered by retrieval: a held-out question's concept embedding finds the stored training
questions nearest to it (the memory's evidence, restricted to the question's own type, which BioASQ gives with
every question), and their gold answers vote.

- yesno: the neighbours' yes/no answers vote, each weighted 1 / rank (nearest first); with no evidence the
  answer is the training questions' majority answer, marked `from_prior`;
- factoid: the neighbours' answers vote (synonyms count as one answer), the five best ranked;
- list: the entries named with at least `list_min_share` of the best entry's votes (at most `list_max`);
- summary: no exact answer; the evidence (and a generated text, if any) only.

Optionally a local transformers causal LM (`generator`: a save_pretrained() directory; nothing is downloaded)
writes an ideal answer from the question and the evidence questions' ideal answers. No claim is made here about
its quality. Metrics are the BioASQ Task B measures (neurocl/composer/qa_metrics.py), on the questions whose gold
answer the file holds.
"""

from collections import Counter, defaultdict
from pathlib import Path

import torch

from neurocl.composer import qa_metrics
from neurocl.composer.qa import write_records
from neurocl.data.base import Splits
from neurocl.errors import ConfigError, DataError


def vote(groups_per_neighbour: list[list[list[str]]]) -> list[tuple[str, float]]:
    """Answers (each a synonym list) of neighbours, nearest first -> (answer, votes), best first.

    A neighbour at rank r gives 1 / (r + 1) to each answer it names; answers sharing a normalised synonym are one
    answer, shown by the first spelling met; ties keep the order first met (the nearer neighbour first)."""
    key_of, shown, votes = {}, {}, defaultdict(float)
    for rank, groups in enumerate(groups_per_neighbour):
        for synonyms in groups:
            names = [qa_metrics.normalise(s) for s in synonyms if qa_metrics.normalise(s)]
            if not names:
                continue
            key = next((key_of[n] for n in names if n in key_of), names[0])
            for n in names:
                key_of.setdefault(n, key)
            shown.setdefault(key, synonyms[0].strip())
            votes[key] += 1 / (rank + 1)
    order = sorted(votes, key=lambda k: -votes[k])  # stable: ties keep first-met order
    return [(shown[k], votes[k]) for k in order]


class Generator:
    """An ideal answer from a local causal LM given the question and its evidence (greedy decoding)."""

    def __init__(self, path: str, max_new_tokens: int = 48):
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise DataError(f"no transformers model at {self.path} (config.json missing). Fix: point "
                            "qa.generator at a directory saved with save_pretrained(); neurocl never downloads models.")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True).eval()
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, question: str, evidence: list[str]) -> str:
        prompt = "".join(f"Context: {e}\n" for e in evidence) + f"Question: {question}\nAnswer:"
        tokens = self.tokenizer(prompt, return_tensors="pt", truncation=True, max_length=512)
        out = self.model.generate(**tokens, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0)
        return self.tokenizer.decode(out[0, tokens["input_ids"].shape[1]:], skip_special_tokens=True).strip()


class BioASQAnswers:
    def __init__(self, neighbours: int = 10, list_min_share: float = 0.5, list_max: int = 10,
                 generator: str | None = None, max_new_tokens: int = 48):
        if not isinstance(neighbours, int) or neighbours < 1:
            raise ConfigError("qa.neighbours", neighbours, "must be a positive integer", "set qa.neighbours=10")
        if not 0 < list_min_share <= 1:
            raise ConfigError("qa.list_min_share", list_min_share, "must be in (0, 1]", "set qa.list_min_share=0.5")
        if not isinstance(list_max, int) or list_max < 1:
            raise ConfigError("qa.list_max", list_max, "must be a positive integer", "set qa.list_max=10")
        self.neighbours, self.list_min_share, self.list_max = neighbours, list_min_share, list_max
        self.generator = Generator(generator, max_new_tokens) if generator else None

    def check(self, splits: Splits):
        meta = splits.train.meta or [{}]
        if "exact_answer" not in meta[0] or "type" not in meta[0]:
            raise ConfigError("qa", "bioasq", f"dataset {splits.name} holds no BioASQ questions",
                              "use dataset=bioasq with qa=bioasq")

    def answer(self, composer, memory, prediction, splits: Splits, train_rows: list[int], output: Path) -> dict:
        train, test = splits.train.meta, splits.test.meta
        # The question's type is given: ask the memory for evidence of that type, whatever type it guessed.
        rows = memory.evidence_rows(prediction, self.neighbours, labels=splits.test.labels)
        prior = Counter(m["exact_answer"] for m in train if m["type"] == "yesno" and m["exact_answer"])
        prior_answer = prior.most_common(1)[0][0] if prior else "yes"
        records, gold = [], defaultdict(list)
        for i, question in enumerate(test):
            kind = question["type"]
            # a prototype may hold questions of several types: keep the evidence of this question's type
            evidence = [e for e in (train[train_rows[r]] for r in rows[i]) if e["type"] == kind]
            record = {"id": question["id"], "type": kind, "question": splits.test.data[i].split("\n")[0],
                      "evidence": [e["id"] for e in evidence], "from_prior": False}
            if kind == "yesno":
                votes = Counter()
                for rank, e in enumerate(evidence):
                    if e["exact_answer"]:
                        votes[e["exact_answer"]] += 1 / (rank + 1)
                record["answer"] = votes.most_common(1)[0][0] if votes else prior_answer
                record["from_prior"] = not votes
            elif kind in ("factoid", "list"):
                ranked = vote([e["exact_answer"] for e in evidence])
                if kind == "factoid":
                    record["answer"] = [a for a, _ in ranked[:5]]
                else:
                    top = ranked[0][1] if ranked else 0
                    record["answer"] = [a for a, v in ranked if v >= self.list_min_share * top][: self.list_max]
            else:
                record["answer"] = None
            if self.generator is not None:
                ideal = [s for e in evidence for s in e["ideal_answer"][:1]]
                record["generated"] = self.generator(record["question"], ideal)
            record["gold"] = question["exact_answer"]
            records.append(record)
            if question["exact_answer"]:  # questions without a gold answer are answered, not scored
                gold[kind].append(record)
        write_records(output, records)
        results = {"questions": len(records), "answered_from_evidence": sum(bool(r["evidence"]) for r in records)}
        if gold["yesno"]:
            results["yesno"] = {"questions": len(gold["yesno"]), **qa_metrics.yesno(
                [r["answer"] for r in gold["yesno"]], [r["gold"] for r in gold["yesno"]])}
        if gold["factoid"]:  # every gold answer's synonyms count as the answer
            results["factoid"] = {"questions": len(gold["factoid"]), **qa_metrics.factoid(
                [r["answer"] for r in gold["factoid"]], [sum(r["gold"], []) for r in gold["factoid"]])}
        if gold["list"]:
            results["list"] = {"questions": len(gold["list"]), **qa_metrics.list_answers(
                [r["answer"] for r in gold["list"]], [r["gold"] for r in gold["list"]])}
        return results
