"""BioASQ JSON and PDF-folder loaders, on tiny files written here in the real formats."""

import json

import pytest
import torch

from neurocl.data.bioasq import BioASQ, normalise_answers
from neurocl.data.pmc import PMCPapers
from neurocl.errors import ConfigError, DataError

from conftest import compose

# ---------------------------------------------------------------- BioASQ


def question(qid, kind, body, exact=None, ideal="An ideal answer.", snippets=("A snippet.",)):
    q = {"id": qid, "type": kind, "body": body, "documents": [f"http://www.ncbi.nlm.nih.gov/pubmed/{qid}"],
         "snippets": [{"text": s, "document": f"http://www.ncbi.nlm.nih.gov/pubmed/{qid}", "beginSection": "abstract",
                       "offsetInBeginSection": 0, "endSection": "abstract", "offsetInEndSection": len(s)}
                      for s in snippets],
         "ideal_answer": ideal}
    if exact is not None:
        q["exact_answer"] = exact
    return q


def training_questions():
    """4 yesno, 4 factoid (nested and older flat answers), 4 list, 3 summary questions."""
    qs = [question(f"yn{i}", "yesno", f"Is gene {i} expressed in the liver?", "yes" if i % 2 else "No")
          for i in range(4)]
    qs += [question(f"fa{i}", "factoid", f"Which protein binds receptor {i}?",
                    [[f"protein {i}", f"P{i}"]] if i % 2 else [f"protein {i}", f"P{i}"]) for i in range(4)]
    qs += [question(f"li{i}", "list", f"List drugs for disease {i}.", [[f"drug {i}a"], [f"drug {i}b", "alias"]])
           for i in range(4)]
    qs += [question(f"su{i}", "summary", f"What is syndrome {i}?", ideal=[f"Syndrome {i} is rare."]) for i in range(3)]
    return qs


def write_bioasq(path, questions):
    path.write_text(json.dumps({"questions": questions}, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def bioasq_file(tmp_path):
    return write_bioasq(tmp_path / "training12b.json", training_questions())


def test_bioasq_splits_questions_by_type(bioasq_file):
    splits = BioASQ(str(bioasq_file)).load()
    assert splits.class_names == ["yesno", "factoid", "list", "summary"] and splits.modality == "text"
    both = splits.train.ids + splits.test.ids
    assert sorted(both) == sorted(q["id"] for q in training_questions())  # every question once
    counts = splits.test.labels.bincount(minlength=4).tolist()
    assert sum(counts) == 5 and min(counts) == 1 and max(counts) == 2  # ceil(0.3 * 15), stratified by type
    for split in (splits.train, splits.test):
        for text, label, qid, meta in zip(split.data, split.labels.tolist(), split.ids, split.meta):
            assert meta["id"] == qid and meta["type"] == splits.class_names[label]
            assert qid[:2] == {"yesno": "yn", "factoid": "fa", "list": "li", "summary": "su"}[meta["type"]]
            assert text.endswith(("?", ".")) and "snippet" not in text  # the body alone
            assert meta["file"] == "training12b.json" and meta["documents"][0].endswith(qid)
    meta = {m["id"]: m for m in splits.train.meta + splits.test.meta}
    assert meta["yn0"]["exact_answer"] == "no" and meta["yn1"]["exact_answer"] == "yes"
    assert meta["fa0"]["exact_answer"] == [["protein 0", "P0"]]  # flat (older file) -> one answer's synonyms
    assert meta["fa1"]["exact_answer"] == [["protein 1", "P1"]]
    assert meta["li2"]["exact_answer"] == [["drug 2a"], ["drug 2b", "alias"]]
    assert meta["su0"]["exact_answer"] is None and meta["su0"]["ideal_answer"] == ["Syndrome 0 is rare."]
    assert meta["li0"]["ideal_answer"] == ["An ideal answer."] and meta["li0"]["snippets"][0]["text"] == "A snippet."
    again = BioASQ(str(bioasq_file)).load()  # the split is fixed (seed 0)
    assert again.test.ids == splits.test.ids and again.train.data == splits.train.data


def test_bioasq_snippets_types_and_test_file(bioasq_file, tmp_path):
    plain, with_snippets = BioASQ(str(bioasq_file)).load(), BioASQ(str(bioasq_file), with_snippets=True).load()
    assert with_snippets.train.ids == plain.train.ids
    assert with_snippets.train.data == [body + "\nA snippet." for body in plain.train.data]  # body, then snippets
    kept = BioASQ(str(bioasq_file), types=["list", "factoid"]).load()
    assert kept.class_names == ["factoid", "list"]  # the fixed type order, not the config's
    assert {m["type"] for m in kept.train.meta + kept.test.meta} == {"factoid", "list"}
    assert all(kept.class_names[y] == m["type"] for y, m in zip(kept.train.labels.tolist(), kept.train.meta))
    no_summary = write_bioasq(tmp_path / "nosum.json", [q for q in training_questions() if q["type"] != "summary"])
    assert BioASQ(str(no_summary)).load().class_names == ["yesno", "factoid", "list"]  # types: null -> present
    with pytest.raises(DataError, match=r"nosum.json holds no summary questions.*dataset.types"):
        BioASQ(str(no_summary), types=["yesno", "summary"]).load()
    golden = write_bioasq(tmp_path / "12B1_golden.json",
                          [question("new1", "factoid", "Which gene?", [["TP53"]]), question("new2", "yesno", "Is it?", "no")])
    separate = BioASQ(str(bioasq_file), test_path=str(golden)).load()
    assert len(separate.train) == 15 and separate.test.ids == ["new1", "new2"]
    assert separate.test.labels.tolist() == [1, 0] and separate.test.meta[0]["file"] == "12B1_golden.json"


def test_bioasq_test_file_must_not_leak_or_add_types(bioasq_file, tmp_path):
    leaky = write_bioasq(tmp_path / "leaky.json", [question("fa2", "factoid", "Which protein binds receptor 2?", ["x"])])
    with pytest.raises(DataError, match=r"1 questions of .*leaky.json are also in .*training12b.json.*fa2"):
        BioASQ(str(bioasq_file), test_path=str(leaky)).load()
    listy = write_bioasq(tmp_path / "listy.json", [question("n1", "list", "List genes.", [["A"]]),
                                                   question("n2", "yesno", "Is it?", "yes")])
    no_list = write_bioasq(tmp_path / "nolist.json", [q for q in training_questions() if q["type"] != "list"])
    with pytest.raises(DataError, match=r"listy.json holds list questions but .*nolist.json has none"
                                        r".*dataset.types=\['yesno', 'factoid', 'summary'\]"):
        BioASQ(str(no_list), test_path=str(listy)).load()  # types: null -> the training file's types
    assert BioASQ(str(no_list), types=["yesno"], test_path=str(listy)).load().test.ids == ["n2"]  # list dropped
    with pytest.raises(DataError, match=r"listy.json holds no questions of the kept types \['summary'\]"):
        BioASQ(str(no_list), types=["summary"], test_path=str(listy)).load()


@pytest.mark.parametrize("question_, expected", [
    ({"type": "yesno", "exact_answer": "Yes"}, "yes"),
    ({"type": "yesno", "exact_answer": ["no"]}, "no"),
    ({"type": "yesno"}, None),
    ({"type": "yesno", "exact_answer": ""}, None),
    ({"type": "factoid", "exact_answer": []}, []),
    ({"type": "factoid"}, []),
    ({"type": "list", "exact_answer": ""}, []),
    ({"type": "factoid", "exact_answer": "TNF"}, [["TNF"]]),
    ({"type": "factoid", "exact_answer": ["TNF", " tumor necrosis factor "]}, [["TNF", "tumor necrosis factor"]]),
    ({"type": "factoid", "exact_answer": [["TNF", "TNF-alpha"]]}, [["TNF", "TNF-alpha"]]),
    ({"type": "list", "exact_answer": ["BRAF", "KRAS", ""]}, [["BRAF"], ["KRAS"]]),
    ({"type": "list", "exact_answer": [["BRAF"], [], ["KRAS", "K-ras"], "NRAS"]}, [["BRAF"], ["KRAS", "K-ras"], ["NRAS"]]),
    ({"type": "list", "exact_answer": [[""], ["KRAS"]]}, [["KRAS"]]),
    ({"type": "summary", "exact_answer": "ignored"}, None),
])
def test_normalise_answers(question_, expected):
    assert normalise_answers(question_)["exact_answer"] == expected


def test_normalise_answers_ideal_and_wrong_shapes():
    assert normalise_answers({"type": "summary", "ideal_answer": "One."})["ideal_answer"] == ["One."]
    assert normalise_answers({"type": "summary", "ideal_answer": ["One.", " ", "Two."]})["ideal_answer"] == ["One.", "Two."]
    assert normalise_answers({"type": "list"})["ideal_answer"] == []
    for bad in ({"type": "yesno", "exact_answer": "maybe"}, {"type": "yesno", "exact_answer": ["yes", "no"]},
                {"type": "factoid", "exact_answer": 3}, {"type": "list", "exact_answer": [["a", 1]]},
                {"type": "summary", "ideal_answer": {"text": "x"}}):
        with pytest.raises(ValueError):
            normalise_answers(bad)


def test_bioasq_malformed_files_are_named(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"questions": [{"id": "a", "type": "yesno",\n "body": "Is it?"', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.json: not valid JSON \(line 2.*Fix"):
        BioASQ(str(broken)).load()
    nolist = write_bioasq(tmp_path / "nolist.json", [])
    nolist.write_text('{"data": []}')
    with pytest.raises(DataError, match=r'nolist.json: no "questions" list.*Fix'):
        BioASQ(str(nolist)).load()
    with pytest.raises(DataError, match=r"missing.json not found.*dataset.path"):
        BioASQ(str(tmp_path / "missing.json")).load()
    cases = [  # (edit of question 5, what the message says)
        (lambda q: q.pop("body"), r"question 5 \(id 'fa1'\) has no body"),
        (lambda q: q.pop("type"), r"question 5 \(id 'fa1'\) has no type"),
        (lambda q: q.update(type="definition"), r"question 5 \(id 'fa1'\) has unknown type 'definition'.*one of yesno, factoid, list, summary"),
        (lambda q: q.update(id="fa0"), r"question 5 \(id 'fa0'\) repeats the id of question 4"),
        (lambda q: q.update(body="  "), r"question 5 \(id 'fa1'\) has an empty body"),
        (lambda q: q.update(snippets=["just text"]), r"question 5 \(id 'fa1'\): snippets must be"),
        (lambda q: q.update(documents="http://x"), r"question 5 \(id 'fa1'\): documents must be"),
        (lambda q: q.update(exact_answer={"a": 1}), r"question 5 \(id 'fa1'\): a factoid exact_answer must be"),
    ]
    for edit, message in cases:
        qs = training_questions()
        edit(qs[5])
        path = write_bioasq(tmp_path / "bad.json", qs)
        with pytest.raises(DataError, match=rf"bad.json: {message}") as error:
            BioASQ(str(path)).load()
        assert "Fix: " in str(error.value)
    qs = training_questions()
    qs[1]["exact_answer"] = "perhaps"
    with pytest.raises(DataError, match=r"bad.json: question 1 \(id 'yn1'\): a yesno exact_answer must be 'yes' or 'no'"):
        BioASQ(str(write_bioasq(tmp_path / "bad.json", qs))).load()
    qs = training_questions()
    qs[3] = "not a question"
    with pytest.raises(DataError, match=r"bad.json: question 3 is not a JSON object"):
        BioASQ(str(write_bioasq(tmp_path / "bad.json", qs))).load()


def test_bioasq_config_errors(bioasq_file, tmp_path):
    with pytest.raises(ConfigError, match="dataset.types"):
        BioASQ(str(bioasq_file), types=["yesno", "essay"])
    with pytest.raises(ConfigError, match="dataset.types"):
        BioASQ(str(bioasq_file), types=[])
    with pytest.raises(ConfigError, match="dataset.test_fraction"):
        BioASQ(str(bioasq_file), test_fraction=1.5)
    with pytest.raises(ConfigError, match="dataset.test_path.*is the training file"):
        BioASQ(str(bioasq_file), test_path=str(bioasq_file)).load()
    one = write_bioasq(tmp_path / "one.json", [question("x", "yesno", "Is x?", "yes"), question("y", "list", "List y.", ["y"])])
    with pytest.raises(DataError, match=r"one.json: cannot split .*'yesno': 1.*dataset.test_path"):
        BioASQ(str(one)).load()


# ---------------------------------------------------------------- PDF folders


def pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def write_text_pdf(path, pages, size=(612, 792)):
    """A minimal valid PDF, by hand: one page per list of lines, in Helvetica (a text layer, no images)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        ops = ["BT", "/F1 24 Tf", f"72 {size[1] - 100} Td"] + [f"{pdf_string(line)} Tj 0 -36 Td" for line in lines] + ["ET"]
        stream = "\n".join(ops).encode("latin-1")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] "
                       f"/Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + (body if isinstance(body, bytes) else body.encode()) + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path


def write_scanned_pdf(path, lines):
    """An image-only page (no text layer), as a scanner writes it: text drawn into pixels, saved by PIL."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (900, 120 + 100 * len(lines)), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=56)
    for i, line in enumerate(lines):
        draw.text((50, 60 + 100 * i), line, fill=0, font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PDF", resolution=100)
    return path


@pytest.fixture
def papers(tmp_path):
    """2 classes x 2 papers with a text layer; one cardiology paper has 2 pages."""
    root = tmp_path / "papers"
    write_text_pdf(root / "oncology" / "PMC101.pdf", [["Tumour growth in mice", "page one"]])
    write_text_pdf(root / "oncology" / "PMC102.pdf", [["Chemotherapy (dose) trial"]])
    write_text_pdf(root / "cardiology" / "PMC201.pdf", [["Heart failure cohort"], ["Second page results"]])
    write_text_pdf(root / "cardiology" / "PMC202.pdf", [["Arrhythmia registry"]])
    return root


TEXTS = {"oncology/PMC101.pdf#page=1": "Tumour growth in mice\npage one",
         "oncology/PMC102.pdf#page=1": "Chemotherapy (dose) trial",
         "cardiology/PMC201.pdf#page=1": "Heart failure cohort",
         "cardiology/PMC201.pdf#page=2": "Second page results",
         "cardiology/PMC202.pdf#page=1": "Arrhythmia registry"}


def test_pdf_pages_render_with_their_text_layer(papers):
    splits = PMCPapers(str(papers), page_size=[64, 48], ocr=False, test_fraction=0.5).load()
    assert splits.class_names == ["cardiology", "oncology"] and splits.modality == "page"
    assert sorted(splits.train.ids + splits.test.ids) == sorted(TEXTS)
    train_files, test_files = ({m["file"] for m in s.meta} for s in (splits.train, splits.test))
    assert not train_files & test_files and len(test_files) == 2  # split by paper, one of each class
    for split in (splits.train, splits.test):
        assert split.images.shape == (len(split), 1, 64, 48) and split.images.dtype == torch.float32
        assert split.images.min() >= 0 and split.images.max() == 1.0
        for sample_id, label, meta in zip(split.ids, split.labels.tolist(), split.meta):
            assert meta["text"] == TEXTS[sample_id] and meta["text_source"] == "layer"
            assert sample_id == f"{meta['file']}#page={meta['page']}"
            assert meta["file"].startswith(splits.class_names[label] + "/")
    pages = torch.cat([splits.train.images, splits.test.images])
    top, bottom = pages[:, 0, :16], pages[:, 0, 48:]
    assert (top < 0.7).any(dim=(1, 2)).all() and (bottom == 1).all()  # text at the top, a white margin below
    wide = PMCPapers(str(papers), page_size=[64, 96], ocr=False, test_fraction=0.5).load().train.images
    assert (wide[:, 0, :, :10] == 1).all() and (wide[:, 0, :, 40:44] < 1).any()  # portrait page centred, sides padded


def test_pdf_text_route_and_max_pages(papers):
    splits = PMCPapers(str(papers), content="text", ocr=False, test_fraction=0.5).load()
    assert splits.modality == "text"
    for split in (splits.train, splits.test):
        assert split.data == [TEXTS[i] for i in split.ids] and split.meta[0]["text_source"] == "layer"
    first = PMCPapers(str(papers), content="text", ocr=False, max_pages=1, test_fraction=0.5).load()
    assert sorted(first.train.ids + first.test.ids) == sorted(i for i in TEXTS if i.endswith("page=1"))


def test_a_scanned_page_is_read_by_ocr(papers):
    scan = write_scanned_pdf(papers / "oncology" / "PMC102.pdf", ["Protein kinase binds", "the insulin receptor"])
    without = PMCPapers(str(papers), content="pixels", page_size=[64, 48], ocr=False, test_fraction=0.5).load()
    meta = {m["file"]: m for m in without.train.meta + without.test.meta}
    assert meta["oncology/PMC102.pdf"]["text"] == "" and meta["oncology/PMC102.pdf"]["text_source"] == "none"
    texts = PMCPapers(str(papers), content="text", ocr=False, test_fraction=0.5).load()
    assert "oncology/PMC102.pdf#page=1" not in texts.train.ids + texts.test.ids  # no text, nothing to encode
    assert len(texts.train) + len(texts.test) == 4
    splits = PMCPapers(str(papers), content="text", test_fraction=0.5).load()  # OCR on the one scanned page: ~5-10 s
    meta = {m["file"]: m for m in splits.train.meta + splits.test.meta}
    assert meta["oncology/PMC102.pdf"]["text_source"] == "ocr" and meta["oncology/PMC101.pdf"]["text_source"] == "layer"
    words = set(meta["oncology/PMC102.pdf"]["text"].lower().split())
    expected = {"protein", "kinase", "binds", "the", "insulin", "receptor"}
    assert len(words & expected) >= 5, (words, scan)  # OCR may slip on a word, not on most


def test_pdf_folder_errors_name_the_file(papers, tmp_path):
    bad = papers / "oncology" / "PMC103.pdf"
    bad.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n")
    with pytest.raises(DataError, match=r"oncology/PMC103.pdf: cannot open it as a PDF.*Fix"):
        PMCPapers(str(papers), ocr=False, test_fraction=0.5).load()
    bad.unlink()
    loose = write_text_pdf(papers / "stray.pdf", [["x"]])
    with pytest.raises(DataError, match=r"PDFs outside a class folder \(stray.pdf\).*root/<class>/"):
        PMCPapers(str(papers)).load()
    loose.unlink()
    (papers / "neurology").mkdir()
    with pytest.raises(DataError, match=r"papers/neurology holds no PDFs.*'neurology'"):
        PMCPapers(str(papers)).load()
    (papers / "neurology").rmdir()
    (papers / "oncology" / "PMC102.pdf").unlink()  # one oncology paper left: cannot be in train and test
    with pytest.raises(DataError, match=r"cannot split the papers \{'cardiology': 2, 'oncology': 1\}.*2 papers"):
        PMCPapers(str(papers), ocr=False).load()
    with pytest.raises(DataError, match=r"nowhere is not a folder.*dataset.root"):
        PMCPapers(str(tmp_path / "nowhere")).load()
    single = tmp_path / "single"
    write_text_pdf(single / "only" / "a.pdf", [["x"]])
    with pytest.raises(DataError, match=r"single has 1 class folder"):
        PMCPapers(str(single)).load()
    for key, kwargs in (("dataset.content", {"content": "words"}), ("dataset.page_size", {"page_size": [64]}),
                        ("dataset.scale", {"scale": 0}), ("dataset.max_pages", {"max_pages": 0}),
                        ("dataset.ocr", {"ocr": "yes"})):
        with pytest.raises(ConfigError, match=key):
            PMCPapers(str(papers), **kwargs)


# ---------------------------------------------------------------- Hydra configs


def test_configs_instantiate_the_loaders(bioasq_file, papers):
    from hydra.utils import instantiate

    cfg = compose("dataset=bioasq", f"dataset.path={bioasq_file}")
    assert cfg.dataset._target_ == "neurocl.data.BioASQ"
    assert instantiate(cfg.dataset).load().class_names == ["yesno", "factoid", "list", "summary"]
    cfg = compose("dataset=pmc", f"dataset.root={papers}", "dataset.ocr=false", "dataset.test_fraction=0.5",
                  "dataset.page_size=[32,24]")
    assert cfg.dataset._target_ == "neurocl.data.PMCPapers"
    assert instantiate(cfg.dataset).load().train.images.shape[1:] == (1, 32, 24)
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="dataset.path"):  # ???: the user brings the file
        instantiate(compose("dataset=bioasq").dataset)
    with pytest.raises(MissingMandatoryValue, match="dataset.root"):
        instantiate(compose("dataset=pmc").dataset)
