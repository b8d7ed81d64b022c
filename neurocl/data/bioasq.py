"""BioASQ Task B biomedical questions (Tsatsaronis et al., 2015), from the training JSON you download.

The user brings their own copy (participants-area.bioasq.org, free registration): `trainingNNb.json`,
or a golden test batch (`NNB1_golden.json`) as the separate test file. Layout:

    {"questions": [{"id": "55031181e9bde69634000014", "type": "factoid",
                    "body": "Which gene is mutated in ...?",
                    "documents": ["http://www.ncbi.nlm.nih.gov/pubmed/15829955", ...],
                    "snippets": [{"text": "...", "document": "http://...", "beginSection": ..., ...}],
                    "exact_answer": [["BRAF", "B-Raf"]],
                    "ideal_answer": ["BRAF is ..."]}, ...]}

Protocol (a stream over question types, modality "text"):
  - a sample is a question; text = its body, and with `with_snippets` the body followed by its snippet
    texts, one per line;
  - label = its type; classes = the types kept, in the fixed order yesno, factoid, list, summary
    (`types: null` keeps every type present in the training file; an explicit list keeps exactly
    those and each must occur there), so a class index means the same type in every file;
  - stratified train/test split over types, `test_fraction` 0.3, seed 0 (fixed: part of the dataset,
    not of the run); or, with `test_path`, train = the whole of `path` and test = the whole of
    `test_path` (a question id in both files is an error: that would test on training questions);
  - sample ids are the BioASQ question ids (stable across the yearly releases); meta per question:
    id, type, exact_answer and ideal_answer (normalised, see `normalise_answers`), snippets,
    documents, file and index (its position in the file).

Required keys per question: id, type, body. Answers, snippets and documents may be absent (test
batches without answers still load; absent means [] or None).
"""

import json
from collections import Counter
from pathlib import Path

import torch

from neurocl.data.base import Split, Splits
from neurocl.errors import ConfigError, DataError

TYPES = ("yesno", "factoid", "list", "summary")
REQUIRED = ("id", "type", "body")
GET = "download trainingNNb.json from participants-area.bioasq.org"


def _strings(value, what: str) -> list[str]:
    """A string or a list of strings -> the stripped, non-empty strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a string or a list of strings, not {value!r:.80}")
    return [v.strip() for v in value if v.strip()]


def normalise_answers(question: dict) -> dict:
    """The answers of one BioASQ question in one form, whatever the file's year.

    Returns {"exact_answer": ..., "ideal_answer": [str, ...]}:
      - yesno: "yes" or "no" (lower case; ["Yes"] is read as "yes"); None when absent or empty;
      - factoid and list: a list of answers, each a list of synonyms ([["BRAF", "B-Raf"], ["KRAS"]]).
        Older files give a flat list of strings: for factoid (one answer) those are the synonyms of
        that answer, [["TNF", "tumor necrosis factor"]]; for list each string is an answer of its own.
        Empty strings and empty synonym lists are dropped; absent or empty -> [];
      - summary: None (summary questions have no exact answer);
      - ideal_answer: a string or a list of strings -> a list of strings; absent -> [].
    Raises ValueError on a value of the wrong shape (a number, a dict, "maybe").
    """
    kind, exact = question.get("type"), question.get("exact_answer")
    ideal = _strings(question.get("ideal_answer", []), "ideal_answer")
    if kind == "summary":
        return {"exact_answer": None, "ideal_answer": ideal}
    if kind == "yesno":
        words = _strings(exact if exact is not None else [], "a yesno exact_answer")
        if len(words) > 1:
            raise ValueError(f"a yesno exact_answer must be one word, not {exact!r:.80}")
        word = words[0].lower() if words else None
        if word not in (None, "yes", "no"):
            raise ValueError(f"a yesno exact_answer must be 'yes' or 'no', not {exact!r:.80}")
        return {"exact_answer": word, "ideal_answer": ideal}
    if exact is None or exact == "" or exact == []:
        return {"exact_answer": [], "ideal_answer": ideal}
    if isinstance(exact, str) or (isinstance(exact, list) and all(isinstance(e, str) for e in exact)):
        flat = _strings(exact, f"a {kind} exact_answer")  # older files: flat
        answers = [flat] if kind == "factoid" else [[s] for s in flat]
    elif isinstance(exact, list):
        answers = [_strings(e, f"each answer of a {kind} exact_answer") for e in exact]
    else:
        raise ValueError(f"a {kind} exact_answer must be a list of synonym lists, not {exact!r:.80}")
    return {"exact_answer": [a for a in answers if a], "ideal_answer": ideal}


def read_questions(path: Path) -> list[dict]:
    """The questions of one BioASQ JSON file, checked and normalised, in file order (body: whitespace collapsed)."""
    if not path.is_file():
        raise DataError(f"{path} not found. Fix: {GET} and set dataset.path (or dataset.test_path) to it.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
                        f"Fix: the file is truncated or not a BioASQ file; {GET} again.") from e
    except (UnicodeDecodeError, OSError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({e}). Fix: {GET} again.") from e
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DataError(f'{path}: no "questions" list at the top level. Fix: point the path at a BioASQ '
                        'Task B file ({"questions": [...]}), e.g. trainingNNb.json.')
    questions, seen = [], {}
    for index, q in enumerate(data["questions"]):
        where = f"{path}: question {index}"
        if not isinstance(q, dict):
            raise DataError(f"{where} is not a JSON object. Fix: repair or re-download the file.")
        where += f" (id {q.get('id', '?')!r})"
        missing = [key for key in REQUIRED if key not in q]
        if missing:
            raise DataError(f"{where} has no {', '.join(missing)}. Fix: every question needs "
                            f"{', '.join(REQUIRED)}; repair that question or re-download the file.")
        if q["type"] not in TYPES:
            raise DataError(f"{where} has unknown type {q['type']!r}. Fix: the type must be one of "
                            f"{', '.join(TYPES)}; correct it or remove the question.")
        if not isinstance(q["body"], str) or not q["body"].strip():
            raise DataError(f"{where} has an empty body. Fix: give it its question text or remove it.")
        if not isinstance(q["id"], str) or not q["id"]:
            raise DataError(f"{where} has no usable id. Fix: give it its BioASQ id (a string).")
        if q["id"] in seen:
            raise DataError(f"{where} repeats the id of question {seen[q['id']]}. Fix: remove the duplicate.")
        seen[q["id"]] = index
        snippets = q.get("snippets", [])
        if not isinstance(snippets, list) or not all(isinstance(s, dict) and isinstance(s.get("text"), str)
                                                     for s in snippets):
            raise DataError(f'{where}: snippets must be a list of objects with a "text" string. '
                            "Fix: repair that question or re-download the file.")
        documents = q.get("documents", [])
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise DataError(f"{where}: documents must be a list of PubMed URLs (strings). "
                            "Fix: repair that question or re-download the file.")
        try:
            answers = normalise_answers(q)
        except ValueError as e:
            raise DataError(f"{where}: {e}. Fix: correct that answer or remove the question.") from e
        questions.append({"id": q["id"], "type": q["type"], "body": " ".join(q["body"].split()), **answers,
                          "snippets": snippets, "documents": documents, "file": path.name, "index": index})
    return questions


class BioASQ:
    def __init__(self, path: str, test_path: str | None = None, types: list[str] | None = None,
                 with_snippets: bool = False, test_fraction: float = 0.3):
        if not isinstance(path, str) or not path:
            raise ConfigError("dataset.path", path, "must be the path of a BioASQ training JSON",
                              "set dataset.path=/path/to/trainingNNb.json")
        if types is not None:
            types = list(types)
            if not types or any(t not in TYPES for t in types) or len(set(types)) != len(types):
                raise ConfigError("dataset.types", types, f"must be distinct types among {list(TYPES)}, or null",
                                  "set dataset.types=null (every type present) or e.g. [yesno, factoid]")
        if not isinstance(with_snippets, bool):
            raise ConfigError("dataset.with_snippets", with_snippets, "must be true or false",
                              "set dataset.with_snippets=false")
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)",
                              "set dataset.test_fraction=0.3")
        self.path, self.test_path, self.types = Path(path).expanduser(), test_path, types
        self.with_snippets, self.test_fraction = with_snippets, test_fraction

    def text(self, q: dict) -> str:
        lines = [q["body"]]
        if self.with_snippets:
            lines += [" ".join(s["text"].split()) for s in q["snippets"] if s["text"].strip()]
        return "\n".join(lines)

    def read(self, path: Path) -> list[dict]:
        keep = self.types or TYPES
        return [q for q in read_questions(path) if q["type"] in keep]

    def make_split(self, questions: list[dict], names: list[str]) -> Split:
        index = {name: c for c, name in enumerate(names)}
        labels = torch.tensor([index[q["type"]] for q in questions], dtype=torch.int64)
        meta = [{k: v for k, v in q.items() if k != "body"} for q in questions]  # the body is the sample
        return Split([self.text(q) for q in questions], labels, [q["id"] for q in questions], "text", meta=meta)

    def load(self) -> Splits:
        train = self.read(self.path)
        present = Counter(q["type"] for q in train)
        names = [t for t in TYPES if (t in self.types if self.types else t in present)]
        absent = [t for t in names if not present[t]]
        if absent or not names:
            raise DataError(f"{self.path} holds no {', '.join(absent) or 'questions of the kept types'} questions "
                            f"(it has {dict(present) or 'none'}). Fix: set dataset.types to types the file has, "
                            "or null for every type present.")
        if self.test_path:
            test_path = Path(self.test_path).expanduser()
            if test_path.resolve() == self.path.resolve():
                raise ConfigError("dataset.test_path", self.test_path, "is the training file",
                                  "set dataset.test_path=null (a split of the training file) or another file")
            test = self.read(test_path)
            extra = sorted({q["type"] for q in test} - set(names))
            if extra:
                raise DataError(f"{test_path} holds {', '.join(extra)} questions but {self.path} has none to train "
                                f"on. Fix: set dataset.types={names} to drop them from the test file.")
            if not test:
                raise DataError(f"{test_path} holds no questions of the kept types {names}. Fix: choose a test "
                                "file with such questions, or set dataset.types to the types it has.")
            both = {q["id"] for q in train} & {q["id"] for q in test}
            if both:
                raise DataError(f"{len(both)} questions of {test_path} are also in {self.path} (e.g. "
                                f"{sorted(both)[0]}). Fix: test on a batch that is not in the training file "
                                "(training files include the test batches of earlier years), or drop test_path.")
            return Splits("bioasq", self.make_split(train, names), self.make_split(test, names), names)
        from neurocl.data.base import stratified_split

        labels = torch.tensor([names.index(q["type"]) for q in train])
        try:
            rows_train, rows_test = stratified_split(labels, self.test_fraction, stratify=True)
        except ValueError as e:  # a type with one question, or fewer test questions than types
            raise DataError(f"{self.path}: cannot split {dict(present)} questions by type with test_fraction "
                            f"{self.test_fraction} ({e}). Fix: keep only types with several questions "
                            "(dataset.types), or give a separate dataset.test_path.") from e
        pick = lambda rows: self.make_split([train[i] for i in rows.tolist()], names)
        return Splits("bioasq", pick(rows_train), pick(rows_test), names)
