"""VQA-RAD (Lau et al., 2018): clinicians' questions about radiology images, from the public release.

The release (OSF, osf.io/89kps; CC0) is a JSON file and an image folder; point dataset.root at the folder
that holds both:

  VQA_RAD Dataset Public.json   a list of records: qid, image_name, question, answer, answer_type (CLOSED /
                                OPEN), question_type (PRES, SIZE, ...), image_organ (HEAD, CHEST, ABD),
                                phrase_type (freeform, para, test_freeform, test_para), ...
  VQA_RAD Image Folder/         synpicNNNNN.jpg

A sample is an (image, question) pair: modality image_text, `ImageText(images, questions)`. Questions are
answered by classification: the label is the index of the normalised answer (lower case, whitespace collapsed:
"Yes " and "yes" are one class) among class_names, which are all normalised answers of the kept records,
most frequent first (ties by name), so test answers have a class even when no training question has them.
Open questions have long-tailed answers: many classes have one sample; answer_types=[CLOSED] keeps the
yes/no-style questions.

Split: `official` uses phrase_type (test: test_freeform and test_para, 451 questions; train: the rest,
1,797); `random` a seeded split by question (test_fraction); `auto` official when every record has a
phrase_type, random when none has. Each sample's meta holds qid, the answer as written, answer_type,
question_type, image_organ and image_name; its id is the JSON file and record index (`...json#17`).
"""

import json
from collections import Counter
from pathlib import Path

import torch

from neurocl.data.base import ImageText, Split, Splits, check_size
from neurocl.data.base import head_rows
from neurocl.data.images import check_image_options, stack_images
from neurocl.errors import ConfigError, DataError

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
REQUIRED = ("qid", "image_name", "question", "answer", "answer_type", "question_type", "image_organ")
ANSWER_TYPES = ("CLOSED", "OPEN")


def normalise(answer) -> str:
    return " ".join(str(answer).lower().split())


class VQARAD:
    def __init__(self, root: str, json_name: str = JSON_NAME, image_dir: str = IMAGE_DIR, split: str = "auto",
                 test_fraction: float = 0.2, seed: int = 0, answer_types: list[str] | None = None,
                 image_size: int = 224, channels: int = 1, missing_images: str = "error",
                 train_size: int | None = None, test_size: int | None = None):
        if split not in ("auto", "official", "random"):
            raise ConfigError("dataset.split", split, "must be auto, official or random", "set dataset.split=auto")
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)", "set dataset.test_fraction=0.2")
        if answer_types is not None and (isinstance(answer_types, str) or not answer_types
                                         or any(t not in ANSWER_TYPES for t in answer_types)):
            raise ConfigError("dataset.answer_types", answer_types, f"must be a non-empty list of {ANSWER_TYPES} or null",
                              "set dataset.answer_types=[CLOSED] or dataset.answer_types=null")
        if missing_images not in ("error", "skip"):
            raise ConfigError("dataset.missing_images", missing_images, "must be error or skip",
                              "set dataset.missing_images=error")
        if image_size is None:  # the MedPix images differ in size: they cannot be stacked unresized
            raise ConfigError("dataset.image_size", None, "VQA-RAD images differ in size", "set dataset.image_size=224")
        check_image_options(channels, image_size)
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        self.root = Path(root).expanduser()
        self.json_path, self.image_dir = self.root / json_name, self.root / image_dir
        self.split, self.test_fraction, self.seed, self.answer_types = split, test_fraction, seed, answer_types
        self.image_size, self.channels, self.missing_images = image_size, channels, missing_images
        self.train_size, self.test_size = train_size, test_size

    def records(self) -> list[dict]:
        """Every record of the JSON, checked; each with its index `k` and the normalised answer."""
        if not self.json_path.is_file():
            raise DataError(f"VQA-RAD file {self.json_path} not found. Fix: download the release (osf.io/89kps) and "
                            f"set dataset.root to the folder holding {JSON_NAME!r} and {IMAGE_DIR!r}.")
        try:
            data = json.loads(self.json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{self.json_path}: not valid JSON ({e}). Fix: re-download the VQA-RAD release.") from e
        if not isinstance(data, list):
            raise DataError(f"{self.json_path}: the top level is a {type(data).__name__}, not a list of records. "
                            "Fix: point dataset.json_name at the VQA-RAD public JSON.")
        out = []
        for k, rec in enumerate(data):
            where = f"{self.json_path}, record {k}"
            if not isinstance(rec, dict):
                raise DataError(f"{where}: a {type(rec).__name__}, not an object. Fix: re-download the release.")
            missing = [key for key in REQUIRED if key not in rec]
            if missing:
                raise DataError(f"{where} (qid {rec.get('qid')!r}): no key {missing[0]!r} (missing: {missing}). "
                                f"Fix: every record needs {list(REQUIRED)}; re-download the release.")
            name, question = rec["image_name"], rec["question"]
            if not isinstance(name, str) or not name.strip() or Path(name).name != name:
                raise DataError(f"{where}: image_name {name!r} is not a file name. Fix: correct the record.")
            if not isinstance(question, str) or not question.strip():
                raise DataError(f"{where}: empty question. Fix: correct or drop the record.")
            answer_type = str(rec["answer_type"]).strip().upper()
            if answer_type not in ANSWER_TYPES:
                raise DataError(f"{where}: answer_type {rec['answer_type']!r}; expected CLOSED or OPEN. "
                                "Fix: correct the record.")
            if rec["answer"] is None or isinstance(rec["answer"], (dict, list)) or not normalise(rec["answer"]):
                raise DataError(f"{where}: answer {rec['answer']!r} is empty. Fix: correct or drop the record.")
            phrase = rec.get("phrase_type")
            out.append({"k": k, "qid": rec["qid"], "image_name": name, "question": question.strip(),
                        "answer": rec["answer"], "label": normalise(rec["answer"]), "answer_type": answer_type,
                        "question_type": str(rec["question_type"]).strip(), "image_organ": str(rec["image_organ"]).strip(),
                        "phrase_type": None if phrase is None else str(phrase).strip().lower()})
        if not out:
            raise DataError(f"{self.json_path} holds no records. Fix: re-download the VQA-RAD release.")
        return out

    def test_mask(self, recs: list[dict]) -> torch.Tensor:
        with_phrase = [r["phrase_type"] is not None for r in recs]
        mode = self.split
        if mode == "auto":
            if any(with_phrase) and not all(with_phrase):
                k = recs[with_phrase.index(False)]["k"]
                raise DataError(f"{self.json_path}, record {k}: no phrase_type, while other records have one, so "
                                "the official split is undefined. Fix: set dataset.split=random, or restore the field.")
            mode = "official" if all(with_phrase) else "random"
        if mode == "official":
            if not all(with_phrase):
                k = recs[with_phrase.index(False)]["k"]
                raise DataError(f"{self.json_path}, record {k}: no phrase_type for dataset.split=official. "
                                "Fix: set dataset.split=random.")
            return torch.tensor([r["phrase_type"].startswith("test") for r in recs])
        test = torch.zeros(len(recs), dtype=torch.bool)  # seeded: the split is part of the dataset, not the run
        order = torch.randperm(len(recs), generator=torch.Generator().manual_seed(self.seed))
        test[order[:max(1, round(self.test_fraction * len(recs)))]] = True
        return test

    def load(self) -> Splits:
        recs = self.records()
        if self.answer_types is not None:
            recs = [r for r in recs if r["answer_type"] in self.answer_types]
        if self.missing_images == "skip":
            recs = [r for r in recs if (self.image_dir / r["image_name"]).is_file()]
        if not recs:
            raise DataError(f"no VQA-RAD records left in {self.json_path} after dataset.answer_types / "
                            "missing_images. Fix: widen dataset.answer_types, or restore the images.")
        test = self.test_mask(recs)
        counts = Counter(r["label"] for r in recs)
        names = sorted(counts, key=lambda a: (-counts[a], a))
        index = {a: c for c, a in enumerate(names)}
        picked = {}
        for name, mask, size in (("train", ~test, self.train_size), ("test", test, self.test_size)):
            part = [recs[i] for i in mask.nonzero().flatten().tolist()]
            picked[name] = [part[i] for i in head_rows(len(part), size).tolist()]
            for r in picked[name]:  # all present before the first decode
                if not (self.image_dir / r["image_name"]).is_file():
                    raise DataError(f"{self.json_path}, record {r['k']}: image {self.image_dir / r['image_name']} "
                                    "not found. Fix: restore it, or set dataset.missing_images=skip.")
        # Questions share images (~7 per image): decode each image once.
        unique = sorted({r["image_name"] for part in picked.values() for r in part})
        first = {}
        for part in picked.values():
            for r in part:
                first.setdefault(r["image_name"], r["k"])
        pixels = stack_images([self.image_dir / n for n in unique], self.channels, self.image_size,
                              lambda i: f"{self.json_path}, record {first[unique[i]]}")
        row = {n: i for i, n in enumerate(unique)}

        def split(part) -> Split:
            images = pixels[torch.tensor([row[r["image_name"]] for r in part], dtype=torch.int64)]
            meta = [{key: r[key] for key in ("qid", "answer", "answer_type", "question_type", "image_organ",
                                               "image_name")} for r in part]
            return Split(ImageText(images, [r["question"] for r in part]),
                         torch.tensor([index[r["label"]] for r in part], dtype=torch.int64),
                         [f"{self.json_path.name}#{r['k']}" for r in part], "image_text", None, meta)

        return Splits("vqa_rad", split(picked["train"]), split(picked["test"]), names)
