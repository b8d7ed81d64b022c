"""Medical image loaders, each fed tiny files that the test writes in the dataset's real on-disk format."""

import csv
import gzip
import json
import shutil

import numpy as np
import pydicom
import pytest
import torch
from conftest import compose
from PIL import Image
from pydicom.data import get_testdata_file

from neurocl.data.base import ImageText
from neurocl.data.images import DicomFolder, read_image
from neurocl.data.medmnist import MedMNIST
from neurocl.data.mimic_cxr import LABELS, MIMICCXR
from neurocl.data.vqa_rad import VQARAD
from neurocl.errors import ConfigError, DataError


def grey_jpeg(path, value: int, shape=(48, 40)):
    """A flat grey JPEG: a constant image is coded by its DC terms alone, so it decodes to `value` (+-1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path, quality=95)


def write_csv(path, header, rows):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# ---------------------------------------------------------------- read_image: PNG / JPEG


def test_read_image_png_and_jpeg(tmp_path):
    ramp = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    x = read_image(tmp_path / "ramp.png")
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(ramp).float() / 255)
    assert read_image(tmp_path / "ramp.png", channels=3).shape == (3, 16, 16)
    assert read_image(tmp_path / "ramp.png", size=8).shape == (1, 8, 8)

    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luma 0.299
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert torch.allclose(read_image(tmp_path / "red.png"), torch.full((1, 4, 4), 0.299), atol=1e-6)
    assert torch.equal(read_image(tmp_path / "red.png", channels=3)[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))

    Image.fromarray(np.full((4, 4), 65535 // 4, np.uint16)).save(tmp_path / "deep.png")  # 16-bit: scaled, not clipped
    assert torch.allclose(read_image(tmp_path / "deep.png"), torch.full((1, 4, 4), (65535 // 4) / 65535))

    grey_jpeg(tmp_path / "flat.jpg", 100, (64, 64))
    assert (read_image(tmp_path / "flat.jpg", size=16) * 255 - 100).abs().max() <= 1.5


def test_read_image_bad_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"broken\.png: cannot read the image.*Fix"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(DataError, match=r"nothere\.jpg not found"):
        read_image(tmp_path / "nothere.jpg")
    with pytest.raises(ConfigError, match="channels"):
        read_image(tmp_path / "broken.png", channels=2)


# ---------------------------------------------------------------- read_image: DICOM (pydicom's real test files)


def test_dicom_ct_rescaled_then_min_max():
    path = get_testdata_file("CT_small.dcm")  # RescaleSlope 1, RescaleIntercept -1024, no window
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = (hu - hu.min()) / (hu.max() - hu.min())
    x = read_image(path)
    assert x.shape == (1, 128, 128) and x.min() == 0 and x.max() == 1
    assert np.abs(x[0].numpy() - expected).max() < 1e-6


def test_dicom_ct_window_is_in_hounsfield_units(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 40, 400  # a soft-tissue window, in HU: after the rescale, not on stored values
    ds.save_as(tmp_path / "windowed.dcm")
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.clip((hu - 39.5) / 399 + 0.5, 0, 1)
    assert np.abs(read_image(tmp_path / "windowed.dcm")[0].numpy() - expected).max() < 1e-6


def test_dicom_mr_window_sets_black_and_white():
    path = get_testdata_file("MR_small.dcm")  # WindowCenter 600, WindowWidth 1600, LINEAR
    ds = pydicom.dcmread(path)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = np.clip((ds.pixel_array - (c - 0.5)) / (w - 1) + 0.5, 0, 1)  # DICOM PS3.3 C.11.2.1.2.1
    x = read_image(path)[0].numpy()
    assert np.abs(x - expected).max() < 1e-6
    assert 0.2 < x.min() < 0.21  # the darkest pixel (127) is inside the window: not stretched to 0 as min-max would


def test_dicom_voi_lut_table(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    item = pydicom.Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUTDescriptor: 4096 entries from stored value 0, 16 bits
    item.add_new(0x00283006, "US", (np.arange(4096) // 2).tolist())  # LUTData: v -> v // 2
    ds.VOILUTSequence = pydicom.Sequence([item])  # a table is preferred to the window
    ds.save_as(tmp_path / "lut.dcm")
    expected = (ds.pixel_array // 2) / 2047  # the table's output range is 0 .. 2047
    assert np.abs(read_image(tmp_path / "lut.dcm")[0].numpy() - expected).max() < 1e-6


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # pydicom bundles no MONOCHROME1 file: make one
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    original = read_image(get_testdata_file("CT_small.dcm"))
    assert torch.allclose(read_image(tmp_path / "mono1.dcm"), 1 - original, atol=1e-6)


def test_dicom_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"MR_truncated\.dcm: cannot decode the pixel data.*Fix"):
        read_image(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(DataError, match=r"rtdose\.dcm: a multi-frame DICOM \(15 frames\)"):
        read_image(get_testdata_file("rtdose.dcm"))
    (tmp_path / "notdicom.dcm").write_bytes(b"this is not a DICOM file" * 20)
    with pytest.raises(DataError, match=r"notdicom\.dcm: cannot read the image"):
        read_image(tmp_path / "notdicom.dcm")


def dicom_folder(tmp_path, split_column=True):
    root = tmp_path / "dicoms"
    (root / "sub").mkdir(parents=True)
    files = [("ct.dcm", "CT_small.dcm", "ct"), ("sub/mr.dcm", "MR_small.dcm", "mr"),
             ("mr_rle.dcm", "MR_small_RLE.dcm", "mr"), ("mr_be.dcm", "MR_small_bigendian.dcm", "mr"),
             ("ct2.dcm", "CT_small.dcm", "ct")]
    for name, source, _ in files:
        shutil.copy(get_testdata_file(source), root / name)
    splits = ["train", "train", "test", "train", "test"]
    write_csv(root / "labels.csv", ["file", "label", "split"] if split_column else ["file", "label"],
              [(n, lab, s) if split_column else (n, lab) for (n, _, lab), s in zip(files, splits)])
    return root


def test_dicom_folder(tmp_path):
    root = dicom_folder(tmp_path)
    splits = DicomFolder(str(root), image_size=32, image_shape=[1, 32, 32]).load()
    assert splits.class_names == ["ct", "mr"]
    assert splits.train.ids == ["ct.dcm", "sub/mr.dcm", "mr_be.dcm"] and splits.test.ids == ["mr_rle.dcm", "ct2.dcm"]
    assert splits.train.labels.tolist() == [0, 1, 1] and splits.test.labels.tolist() == [1, 0]
    assert splits.train.images.shape == (3, 1, 32, 32)
    assert torch.allclose(splits.train.images[1], splits.train.images[2], atol=1e-5)  # same MR, other byte order
    assert torch.allclose(splits.test.images[1], read_image(root / "ct.dcm", size=32))

    root2 = dicom_folder(tmp_path / "b", split_column=False)  # no split column: per class, seeded
    a, b = DicomFolder(str(root2), image_size=16).load(), DicomFolder(str(root2), image_size=16).load()
    assert a.test.ids == b.test.ids and sorted(a.test.labels.tolist()) == [0, 1] and len(a.train) == 3
    tests = {tuple(DicomFolder(str(root2), seed=seed, image_size=8).load().test.ids) for seed in range(4)}
    assert len(tests) > 1  # the seed chooses the split


def test_dicom_folder_bad_input(tmp_path):
    root = dicom_folder(tmp_path)
    write_csv(root / "nolabel.csv", ["file"], [("ct.dcm",)])
    with pytest.raises(DataError, match=r"nolabel\.csv: no column\(s\) \['label'\]"):
        DicomFolder(str(root), labels_csv=str(root / "nolabel.csv")).load()
    write_csv(root / "gone.csv", ["file", "label"], [("ct.dcm", "ct"), ("gone.dcm", "ct")])
    with pytest.raises(DataError, match=r"gone\.csv, line 3: image .*gone\.dcm not found"):
        DicomFolder(str(root), labels_csv=str(root / "gone.csv")).load()
    shutil.copy(get_testdata_file("MR_truncated.dcm"), root / "mr_rle.dcm")  # line 4 of labels.csv
    with pytest.raises(DataError, match=r"labels\.csv, line 4: .*mr_rle\.dcm: cannot decode"):
        DicomFolder(str(root), image_size=16).load()


# ---------------------------------------------------------------- MedMNIST .npz


def medmnist_npz(path, rgb=False, label_columns=1, n=(6, 2, 4), path_only=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, 28, 28, 3) if rgb else (count, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if label_columns == 1:
            arrays[f"{split}_labels"] = (np.arange(count) % 3).reshape(-1, 1).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, label_columns), dtype=np.uint8)
    np.savez(path, **arrays)  # MedMNIST's own format: np.savez of these six arrays
    return path if path_only else arrays


def test_medmnist_single_label(tmp_path):
    arrays = medmnist_npz(tmp_path / "pathmnist.npz")
    splits = MedMNIST(str(tmp_path / "pathmnist.npz"), image_shape=[1, 28, 28]).load()
    assert splits.name == "pathmnist" and splits.class_names == ["0", "1", "2"]
    assert splits.train.images.shape == (6, 1, 28, 28) and splits.test.labels.tolist() == [0, 1, 2, 0]
    assert splits.train.labels.dtype == torch.int64 and not splits.train.multi_label
    assert torch.equal(splits.train.images[4, 0], torch.from_numpy(arrays["train_images"][4]).float() / 255)
    assert splits.test.ids[3] == "pathmnist.npz#test_images[3]"

    merged = MedMNIST(str(tmp_path / "pathmnist.npz"), val="train", class_names=["a", "b", "c"]).load()
    assert len(merged.train) == 8 and merged.train.ids[6:] == ["pathmnist.npz#val_images[0]", "pathmnist.npz#val_images[1]"]
    assert merged.train.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1] and merged.class_names == ["a", "b", "c"]

    sub = MedMNIST(str(tmp_path / "pathmnist.npz"), train_size=3).load().train
    full = splits.train.head(3)  # the same subset as Split.head, chosen before conversion
    assert sub.ids == full.ids and torch.equal(sub.images, full.images)


def test_medmnist_rgb_and_multi_label(tmp_path):
    arrays = medmnist_npz(tmp_path / "dermamnist.npz", rgb=True)
    x = MedMNIST(str(tmp_path / "dermamnist.npz")).load().train.images
    assert x.shape == (6, 3, 28, 28)
    assert torch.equal(x[2, 1], torch.from_numpy(arrays["train_images"][2, :, :, 1]).float() / 255)  # green plane

    arrays = medmnist_npz(tmp_path / "chestmnist.npz", label_columns=14)
    splits = MedMNIST(str(tmp_path / "chestmnist.npz")).load()
    assert splits.train.multi_label and splits.train.labels.shape == (6, 14)
    assert splits.train.labels.tolist() == arrays["train_labels"].tolist()
    assert splits.class_names == [str(i) for i in range(14)] and splits.train.label_names == splits.class_names


def test_medmnist_bad_input(tmp_path):
    arrays = medmnist_npz(tmp_path / "ok.npz")
    np.savez(tmp_path / "nokey.npz", **{k: v for k, v in arrays.items() if k != "val_labels"})
    with pytest.raises(DataError, match=r"nokey\.npz: no key 'val_labels'.*Fix"):
        MedMNIST(str(tmp_path / "nokey.npz")).load()
    np.savez(tmp_path / "shape.npz", **{**arrays, "test_labels": arrays["test_labels"][:, 0]})
    with pytest.raises(DataError, match=r"shape\.npz: test_labels is uint8 \(4,\)"):
        MedMNIST(str(tmp_path / "shape.npz")).load()
    np.savez(tmp_path / "vol.npz", **{**arrays, "train_images": np.zeros((6, 28, 28, 28), np.uint8)})
    with pytest.raises(DataError, match=r"vol\.npz: train_images .*3-D sets"):
        MedMNIST(str(tmp_path / "vol.npz")).load()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        MedMNIST(str(tmp_path / "junk.npz")).load()
    with pytest.raises(ConfigError, match="dataset.class_names"):
        MedMNIST(str(tmp_path / "ok.npz"), class_names=["a", "b"]).load()
    with pytest.raises(ConfigError, match="dataset.val"):
        MedMNIST(str(tmp_path / "ok.npz"), val="test")


# ---------------------------------------------------------------- MIMIC-CXR-JPG


MIMIC_STUDIES = [  # subject, study, {label: value as written}; the rest blank
    ("10000032", "50414267", {"No Finding": "1.0"}),
    ("10000032", "53189527", {"Edema": "-1.0", "Cardiomegaly": "1.0", "Pneumonia": "0.0"}),
    ("11000011", "51029426", {"Pleural Effusion": "1.0", "Atelectasis": "-1.0"}),
    ("12000012", "55555555", {"Support Devices": "1.0"}),
]
MIMIC_IMAGES = [  # dicom_id, subject, study, split, view, grey value
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "train", "PA", 40),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "train", "LATERAL", 80),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000032", "53189527", "validate", "AP", 120),
    ("e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c", "11000011", "51029426", "test", "PA", 160),
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "12000012", "55555555", "train", "AP", 200),
    ("ffffffff-00000000-11111111-22222222-33333333", "19999999", "59999999", "train", "PA", 240),  # unlabelled study
]


def mimic_root(tmp_path, gz=False):
    root = tmp_path / "mimic-cxr-jpg"
    root.mkdir(parents=True)
    ext = ".csv.gz" if gz else ".csv"
    rows = [[subject, study] + [values.get(name, "") for name in LABELS] for subject, study, values in MIMIC_STUDIES]
    write_csv(root / f"mimic-cxr-2.0.0-chexpert{ext}", ["subject_id", "study_id", *LABELS], rows)
    write_csv(root / f"mimic-cxr-2.0.0-split{ext}", ["dicom_id", "study_id", "subject_id", "split"],
              [(d, study, subject, split) for d, subject, study, split, _, _ in MIMIC_IMAGES])
    write_csv(root / f"mimic-cxr-2.0.0-metadata{ext}", ["dicom_id", "subject_id", "study_id", "ViewPosition"],
              [(d, subject, study, view) for d, subject, study, _, view, _ in MIMIC_IMAGES])
    for d, subject, study, _, _, value in MIMIC_IMAGES:
        grey_jpeg(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{d}.jpg", value)
    return root


def labels_row(**values):
    return [values.get(name.replace(" ", "_"), 0) for name in LABELS]


def test_mimic_cxr_layout_and_labels(tmp_path):
    root = mimic_root(tmp_path)
    splits = MIMICCXR(str(root), image_size=16).load()
    assert splits.class_names == LABELS and splits.train.label_names == LABELS and splits.train.multi_label
    assert splits.train.ids == [  # the validate image and the unlabelled study's image are left out
        "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
        "files/p10/p10000032/s50414267/174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962.jpg",
        "files/p12/p12000012/s55555555/68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714.jpg"]
    assert splits.train.labels.tolist() == [labels_row(No_Finding=1), labels_row(No_Finding=1),
                                           labels_row(Support_Devices=1)]
    assert splits.test.labels.tolist() == [labels_row(Pleural_Effusion=1)]  # uncertain Atelectasis -> 0
    assert splits.train.images.shape == (3, 1, 16, 16) and splits.test.images.shape == (1, 1, 16, 16)
    means = (splits.train.images.mean(dim=(1, 2, 3)) * 255).tolist()
    assert means == pytest.approx([40, 80, 200], abs=1.5)  # each image is its own file
    assert splits.test.meta == [{"subject_id": "11000011", "study_id": "51029426",
                                 "dicom_id": "e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c"}]


@pytest.mark.parametrize("uncertain,value", [("ones", 1), ("ignore", -1)])
def test_mimic_cxr_uncertain_policy(tmp_path, uncertain, value):
    root = mimic_root(tmp_path, gz=True)  # PhysioNet ships the CSVs gzipped
    splits = MIMICCXR(str(root), uncertain=uncertain, val="train", image_size=8).load()
    assert splits.train.ids[2].endswith("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab.jpg")  # validate -> train
    assert splits.train.labels[2].tolist() == labels_row(Edema=value, Cardiomegaly=1)  # blank and 0.0 -> 0
    assert splits.test.labels[0].tolist() == labels_row(Pleural_Effusion=1, Atelectasis=value)


def test_mimic_cxr_views_and_subsets(tmp_path):
    root = mimic_root(tmp_path)
    frontal = MIMICCXR(str(root), views=["PA", "AP"], image_size=8).load()
    assert [i.split("/")[-1][:8] for i in frontal.train.ids] == ["02aa804e", "68b5c4b1"]
    sub = MIMICCXR(str(root), train_size=2, image_size=8).load().train
    full = MIMICCXR(str(root), image_size=8).load().train
    assert sub.ids == full.head(2).ids  # the same subset as Split.head, chosen before decoding
    (root / sub.ids[0]).unlink()
    kept = MIMICCXR(str(root), missing_images="skip", image_size=8).load().train
    assert len(kept) == 2 and sub.ids[0] not in kept.ids


def test_mimic_cxr_bad_input(tmp_path):
    root = mimic_root(tmp_path)
    chexpert, split = root / "mimic-cxr-2.0.0-chexpert.csv", root / "mimic-cxr-2.0.0-split.csv"
    lines = chexpert.read_text().splitlines()
    chexpert.write_text("\n".join(lines[:3] + [lines[3].replace("-1.0", "maybe", 1)] + lines[4:]) + "\n")
    with pytest.raises(DataError, match=r"chexpert\.csv, line 4: Atelectasis = 'maybe'"):
        MIMICCXR(str(root)).load()
    write_csv(chexpert, ["subject_id", "study_id", *LABELS[:-1]], [])
    with pytest.raises(DataError, match=r"chexpert\.csv: no column\(s\) \['Support Devices'\]"):
        MIMICCXR(str(root)).load()

    root = mimic_root(tmp_path / "b")
    split = root / "mimic-cxr-2.0.0-split.csv"
    image = root / "files/p11/p11000011/s51029426/e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")  # line 5 of the split CSV
    with pytest.raises(DataError, match=r"split\.csv, line 5: .*e084de3b.*\.jpg: cannot read the image"):
        MIMICCXR(str(root), image_size=8).load()
    image.unlink()
    with pytest.raises(DataError, match=r"split\.csv, line 5: image .*e084de3b.*\.jpg not found.*missing_images=skip"):
        MIMICCXR(str(root), image_size=8).load()
    lines = split.read_text().splitlines()
    split.write_text("\n".join(lines[:2] + [lines[2].replace("train", "dev")] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"split\.csv, line 3: .*split 'dev'"):
        MIMICCXR(str(root), image_size=8).load()
    with pytest.raises(ConfigError, match="dataset.uncertain"):
        MIMICCXR(str(root), uncertain="drop")


# ---------------------------------------------------------------- VQA-RAD


def vqa_record(qid, image, question, answer, answer_type, phrase="freeform", question_type="PRES", organ="CHEST"):
    rec = {"qid": qid, "image_name": image, "image_case_url": f"https://medpix.nlm.nih.gov/case?id={image}",
           "image_organ": organ, "answer": answer, "answer_type": answer_type, "question_type": question_type,
           "question": question, "question_rephrase": "NULL", "evaluation": "not evaluated"}
    if phrase is not None:
        rec["phrase_type"] = phrase
    return rec


def vqa_root(tmp_path, phrase=True):
    root = tmp_path / "VQA_RAD"
    p = (lambda v: v) if phrase else (lambda v: None)
    records = [
        vqa_record(0, "synpic54610.jpg", "Are regions of the brain infarcted?", "Yes", "CLOSED", p("freeform"), organ="HEAD"),
        vqa_record(1, "synpic54610.jpg", "Is there infarction in the brain?", "yes ", "CLOSED", p("para"), organ="HEAD"),
        vqa_record(2, "synpic29265.jpg", "What organ system is shown?", "Chest", "OPEN", p("freeform"), "ORGAN"),
        vqa_record(3, "synpic29265.jpg", "Is the heart enlarged?", "No", "CLOSED ", p("test_freeform"), "SIZE"),
        vqa_record(4, "synpic42202.jpg", "How many ribs are fractured?", 2, "OPEN", p("test_para"), "COUNT"),
    ]
    (root / "VQA_RAD Image Folder").mkdir(parents=True)
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records, indent=1))
    for name, value in (("synpic54610.jpg", 50), ("synpic29265.jpg", 150), ("synpic42202.jpg", 250)):
        grey_jpeg(root / "VQA_RAD Image Folder" / name, value, (40, 56))
    return root


def test_vqa_rad_official_split(tmp_path):
    root = vqa_root(tmp_path)
    splits = VQARAD(str(root), image_size=16).load()
    assert splits.modality == "image_text" and isinstance(splits.train.data, ImageText)
    assert splits.class_names == ["yes", "2", "chest", "no"]  # 'Yes' and 'yes ' are one class, most frequent first
    assert splits.train.labels.tolist() == [0, 0, 2] and splits.test.labels.tolist() == [3, 1]
    assert splits.train.data.texts[2] == "What organ system is shown?"
    assert splits.train.ids == ["VQA_RAD Dataset Public.json#0", "VQA_RAD Dataset Public.json#1",
                                "VQA_RAD Dataset Public.json#2"]
    assert splits.test.meta[0] == {"qid": 3, "answer": "No", "answer_type": "CLOSED", "question_type": "SIZE",
                                   "image_organ": "CHEST", "image_name": "synpic29265.jpg"}
    images = splits.train.data.images
    assert images.shape == (3, 1, 16, 16) and torch.equal(images[0], images[1])  # one image, two questions
    assert (images.mean(dim=(1, 2, 3)) * 255).tolist() == pytest.approx([50, 50, 150], abs=1.5)
    assert (splits.test.data.images[1].mean() * 255).item() == pytest.approx(250, abs=1.5)

    closed = VQARAD(str(root), answer_types=["CLOSED"], image_size=8).load()
    assert closed.class_names == ["yes", "no"] and closed.test.labels.tolist() == [1]


def test_vqa_rad_random_split_without_phrase_type(tmp_path):
    root = vqa_root(tmp_path, phrase=False)
    a = VQARAD(str(root), test_fraction=0.4, seed=3, image_size=8).load()
    b = VQARAD(str(root), test_fraction=0.4, seed=3, image_size=8).load()
    assert len(a.test) == 2 and len(a.train) == 3 and a.test.ids == b.test.ids
    assert sorted(a.train.ids + a.test.ids) == [f"VQA_RAD Dataset Public.json#{k}" for k in range(5)]
    with pytest.raises(DataError, match=r"record 0: no phrase_type for dataset.split=official"):
        VQARAD(str(root), split="official", image_size=8).load()


def test_vqa_rad_bad_input(tmp_path):
    root = vqa_root(tmp_path)
    path = root / "VQA_RAD Dataset Public.json"
    records = json.loads(path.read_text())
    path.write_text(json.dumps(records)[:-40])
    with pytest.raises(DataError, match=r"VQA_RAD Dataset Public\.json: not valid JSON"):
        VQARAD(str(root)).load()
    del records[2]["answer_type"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"Public\.json, record 2 \(qid 2\): no key 'answer_type'"):
        VQARAD(str(root)).load()
    records[2]["answer_type"] = "OPEN"
    path.write_text(json.dumps(records))
    (root / "VQA_RAD Image Folder" / "synpic42202.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"Public\.json, record 4: .*synpic42202\.jpg: cannot read the image"):
        VQARAD(str(root), image_size=8).load()
    (root / "VQA_RAD Image Folder" / "synpic42202.jpg").unlink()
    with pytest.raises(DataError, match=r"record 4: image .*synpic42202\.jpg not found"):
        VQARAD(str(root), image_size=8).load()
    assert len(VQARAD(str(root), missing_images="skip", image_size=8).load().test) == 1


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("name,key,make", [
    ("medmnist", "path", lambda t: medmnist_npz(t / "bloodmnist.npz", path_only=True)),
    ("mimic_cxr", "root", mimic_root),
    ("vqa_rad", "root", vqa_root),
    ("dicom_folder", "root", dicom_folder),
])
def test_configs_instantiate(tmp_path, name, key, make):
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    cfg = compose(f"dataset={name}")
    with pytest.raises(MissingMandatoryValue):  # the user must give their own copy
        getattr(cfg.dataset, key)
    cfg = compose(f"dataset={name}", f"dataset.{key}={make(tmp_path)}", "dataset.train_size=2")
    splits = instantiate(cfg.dataset).load()
    assert len(splits.train) == 2 and len(splits.test) > 0


def test_images_of_different_sizes_need_image_size(tmp_path):
    root = dicom_folder(tmp_path)  # CT 128 px and MR 64 px
    with pytest.raises(DataError, match=r"labels\.csv, line 3: image .*mr\.dcm is \[1, 64, 64\].*dataset.image_size"):
        DicomFolder(str(root), image_size=None).load()
