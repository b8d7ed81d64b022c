"""Question answering after the stream, end to end on tiny files in the real formats written here: BioASQ by
retrieval over stored training questions (MiniLM), VQA-RAD through the fused image-question encoder."""

import json
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import compose
from neurocl.composer.bioasq import vote
from neurocl.errors import ConfigError
from neurocl.run import execute
from test_data_bioasq_pmc import question, write_bioasq
from test_data_medical_images import grey_jpeg, vqa_record

# Topics whose training questions share answers: a held-out question on a topic should be answered by them.
YESNO = {"yes": ["Is BRAF mutated in melanoma?", "Is the BRAF V600E mutation frequent in melanoma?",
                 "Are BRAF mutations common in cutaneous melanoma?", "Is BRAF a driver gene in melanoma?"],
         "no": ["Is aspirin effective against the influenza virus?", "Does aspirin cure viral influenza?",
                "Can aspirin be used to treat influenza infection?", "Is aspirin an antiviral drug for flu?"]}
FACTOID = {"CFTR": ["Which gene is mutated in cystic fibrosis?", "What gene causes cystic fibrosis?",
                    "Which gene is defective in patients with cystic fibrosis?"],
           "insulin": ["Which hormone lowers blood glucose?", "What hormone do pancreatic beta cells secrete?",
                       "Which hormone is deficient in type 1 diabetes?"]}
LISTS = {("amlodipine", "lisinopril"): ["List drugs used to treat hypertension.",
                                        "Which drugs lower high blood pressure?", "List antihypertensive drugs."],
         ("dopamine", "serotonin"): ["List monoamine neurotransmitters.", "Which neurotransmitters are monoamines?",
                                     "Name monoamine neurotransmitters in the brain."]}


def bioasq_files(tmp_path):
    train, n = [], 0
    for answer, bodies in YESNO.items():
        train += [question(f"yn{(n := n + 1)}", "yesno", b, answer, ideal=f"The answer is {answer}.") for b in bodies]
    for answer, bodies in FACTOID.items():
        train += [question(f"fa{(n := n + 1)}", "factoid", b, [[answer]]) for b in bodies]
    for answers, bodies in LISTS.items():
        train += [question(f"li{(n := n + 1)}", "list", b, [[a] for a in answers]) for b in bodies]
    train += [question(f"su{i}", "summary", f"What is syndrome {i}?", ideal=f"Syndrome {i} is rare.") for i in range(6)]
    test = [question("t1", "yesno", "Is the BRAF gene mutated in melanoma tumours?", "yes"),
            question("t2", "yesno", "Is aspirin an effective treatment of influenza?", "no"),
            question("t3", "factoid", "Mutations of which gene cause cystic fibrosis?", [["CFTR", "ABCC7"]]),
            question("t4", "factoid", "Which pancreatic hormone reduces blood sugar?", [["insulin"]]),
            question("t5", "list", "Which drugs are used against hypertension?", [["lisinopril"], ["amlodipine"]]),
            question("t6", "summary", "What is syndrome 3?", ideal="Rare."),
            question("t7", "yesno", "Is BRAF mutated in melanoma cells?")]  # no gold: answered, not scored
    return (write_bioasq(tmp_path / "training.json", train), write_bioasq(tmp_path / "golden.json", test))


def test_vote_ranks_answers_by_neighbour_rank_and_merges_synonyms():
    ranked = vote([[["CFTR", "ABCC7"]], [["insulin"]], [["abcc7"]], []])
    assert ranked == [("CFTR", 1 + 1 / 3), ("insulin", 1 / 2)]  # "abcc7" is a synonym of CFTR: one answer
    assert vote([[["a"]], [["b"]]]) == [("a", 1.0), ("b", 0.5)]
    assert vote([[[" "]], []]) == []  # empty answers vote for nothing


@pytest.mark.parametrize("memory", ["prototypes", "knn"])
def test_bioasq_questions_answered_by_the_stored_questions_nearest_to_them(tmp_path, memory):
    train, test = bioasq_files(tmp_path)
    cfg = compose("dataset=bioasq", f"dataset.path={train}", f"dataset.test_path={test}", "encoder=minilm",
                  "qa=bioasq", f"memory={memory}", "qa.neighbours=3", f"paths.cache_dir={tmp_path / 'cache'}")
    qa = execute(cfg, tmp_path / "out")["qa"]
    assert qa["yesno"] == {"questions": 2, "accuracy": 1.0, "macro_f1": 1.0}
    assert qa["factoid"]["strict_accuracy"] == 1.0 and qa["factoid"]["mrr"] == 1.0
    assert qa["list"]["recall"] == 1.0
    if memory == "knn":  # exact neighbours; the store's tiny-data prototypes mix the two list topics
        assert qa["list"]["precision"] == 1.0
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "qa.jsonl").read_text().splitlines())}
    assert records["t3"]["answer"][0] == "CFTR" and all(e.startswith("fa") for e in records["t3"]["evidence"])
    assert records["t7"]["answer"] == "yes" and records["t7"]["gold"] is None  # answered, not scored
    assert records["t6"]["answer"] is None and records["t6"]["evidence"]  # summary: evidence only


def test_a_memory_without_stored_questions_answers_from_the_prior_only(tmp_path):
    """Control: NCM keeps no samples, so no evidence: yes/no falls back to the training majority, factoid is empty."""
    train, test = bioasq_files(tmp_path)
    cfg = compose("dataset=bioasq", f"dataset.path={train}", f"dataset.test_path={test}", "encoder=minilm",
                  "qa=bioasq", "memory=ncm", f"paths.cache_dir={tmp_path / 'cache'}")
    qa = execute(cfg, tmp_path / "out")["qa"]
    assert qa["answered_from_evidence"] == 0 and qa["yesno"]["accuracy"] == 0.5
    assert qa["factoid"]["lenient_accuracy"] == 0.0 and qa["list"]["f1"] == 0.0


def test_a_generated_answer_from_a_local_model(tmp_path):
    """A tiny random causal LM saved here (the MiniLM package's tokenizer): the answer is written, not judged."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from neurocl.encoders.text import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=512, n_embd=16, n_layer=1,
                                       n_head=2))
    model.save_pretrained(tmp_path / "lm"), tokenizer.save_pretrained(tmp_path / "lm")
    train, test = bioasq_files(tmp_path)
    cfg = compose("dataset=bioasq", f"dataset.path={train}", f"dataset.test_path={test}", "encoder=minilm",
                  "qa=bioasq", "memory=knn", f"qa.generator={tmp_path / 'lm'}", "qa.max_new_tokens=5",
                  f"paths.cache_dir={tmp_path / 'cache'}")
    execute(cfg, tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / "qa.jsonl").read_text().splitlines()]
    assert all(isinstance(r["generated"], str) and r["generated"] for r in records)


def test_qa_asks_only_datasets_that_hold_its_questions(tmp_path, fmnist_dir):
    for qa, match in (("bioasq", "holds no BioASQ questions"), ("vqa", "holds no visual questions")):
        cfg = compose(f"dataset.root={fmnist_dir}", f"qa={qa}", f"paths.cache_dir={tmp_path / 'cache'}")
        with pytest.raises(ConfigError, match=match):
            execute(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()  # refused before anything was encoded


def vqa_files(tmp_path):
    """Two images (a bright head CT, a dark chest film), each asked the same questions many times over."""
    root = tmp_path / "VQA_RAD"
    (root / "VQA_RAD Image Folder").mkdir(parents=True)
    images = {"synpic1.jpg": (230, "HEAD"), "synpic2.jpg": (20, "CHEST")}
    for name, (value, _) in images.items():
        grey_jpeg(root / "VQA_RAD Image Folder" / name, value, (40, 40))
    records, k = [], 0
    for phrase in ("freeform", "para", "freeform", "para", "test_freeform"):
        for name, (_, organ) in images.items():
            head = organ == "HEAD"
            for q, a, kind in (("Is there a bleed?", "yes" if head else "no", "CLOSED"),
                               ("Which organ is shown?", organ.lower(), "OPEN")):
                records.append(vqa_record(k, name, q, a, kind, phrase, organ=organ))
                k += 1
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records))
    return root


def test_vqa_rad_answers_closed_and_open_questions_with_their_evidence(tmp_path):
    root = vqa_files(tmp_path)
    cfg = compose("dataset=vqa_rad", f"dataset.root={root}", "dataset.image_size=32", "encoder=image_text",
                  "encoder.image.resolution=32", "qa=vqa", "memory=knn", "memory.k=3",
                  "scenario.classes_per_experience=2", "validation_fraction=0.25",  # training rows != memory rows
                  f"paths.cache_dir={tmp_path / 'cache'}")
    qa = execute(cfg, tmp_path / "out")["qa"]
    assert qa["questions"] == 4 and qa["closed_accuracy"] == 1.0 and qa["open_accuracy"] == 1.0
    records = [json.loads(line) for line in (tmp_path / "out" / "qa.jsonl").read_text().splitlines()]
    for r in records:  # the evidence: training questions about the same image, with the same answer
        assert r["evidence"] and all(e["image"] == r["image"] and e["answer"] == r["answer"] for e in r["evidence"])


def test_bioasq_evidence_of_another_type_does_not_vote():
    """A prototype may hold questions of several types: only the evidence of the question's own type votes."""
    from types import SimpleNamespace

    from neurocl.composer.bioasq import BioASQAnswers
    from neurocl.data.base import Split, Splits

    def split(questions):
        meta = [{"id": q, "type": t, "exact_answer": a, "ideal_answer": []} for q, t, a in questions]
        labels = torch.tensor([["yesno", "factoid", "summary"].index(t) for _, t, _ in questions])
        return Split([f"question {q}?" for q, _, _ in questions], labels, [q for q, _, _ in questions], "text",
                     meta=meta)

    train = split([("f1", "factoid", [["CFTR"]]), ("y1", "yesno", "no"), ("s1", "summary", None)])
    test = split([("t1", "yesno", "no"), ("t2", "factoid", [["CFTR"]])])
    splits = Splits("bioasq", train, test, ["yesno", "factoid", "summary"])
    memory = SimpleNamespace(evidence_rows=lambda prediction, k, labels=None: [[0, 2, 1], [1, 2, 0]])
    qa = BioASQAnswers(neighbours=3).answer(None, memory, None, splits, [0, 1, 2], Path(tempfile.mkdtemp()) / "qa.jsonl")
    assert qa["yesno"]["accuracy"] == 1.0 and qa["factoid"]["strict_accuracy"] == 1.0  # "no" and "CFTR", not "y","e","s"
