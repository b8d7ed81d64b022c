"""MIMIC-CXR-JPG (Johnson et al., 2019): chest X-rays with 14 CheXpert labels, from the PhysioNet layout.

MIMIC-CXR-JPG is credentialed data (PhysioNet, data use agreement): neurocl never ships or downloads it;
point dataset.root at your copy, the folder that holds

  mimic-cxr-2.0.0-chexpert.csv[.gz]  subject_id, study_id and the 14 label columns (LABELS); per study:
                                     1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned
  mimic-cxr-2.0.0-split.csv[.gz]     dicom_id, study_id, subject_id, split (train / validate / test)
  mimic-cxr-2.0.0-metadata.csv[.gz]  dicom_id, ViewPosition, ... (read only when dataset.views is set)
  files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg   (pXX: the first two digits of the subject id)

A sample is one image (a study may have several: PA, lateral, ...); its labels are its study's, an int64
(N, 14) tensor with columns in LABELS order. Blank = 0. `uncertain` sets what -1.0 becomes:
  zeros   0 (U-Zeros of the CheXpert paper);
  ones    1 (U-Ones);
  ignore  -1 is kept as 'unknown': multi-label metrics must mask the entries < 0 (score only labels >= 0),
          otherwise an uncertain finding counts as a wrong answer.
Images of studies without a label row are left out (a few hundred in the release). The official `validate`
split is ignored or appended to train (`val`). train_size / test_size pick fixed random subsets (seed 0)
before any image is decoded; every image is resized to image_size x image_size (the JPEGs are ~2500 px:
decoded at reduced scale, then antialiased). The full training split (~370k images) does not fit in memory
as floats; use subsets. All CSV rows, and the presence of every selected image, are checked before the first
image is decoded, so a damaged copy fails in seconds. Sample ids are the image paths under root.
"""

import logging
from pathlib import Path

import torch

from neurocl.data.base import Split, Splits, check_size
from neurocl.data.base import head_rows
from neurocl.data.images import check_image_options, read_csv, stack_images
from neurocl.errors import ConfigError, DataError

log = logging.getLogger("neurocl")

LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
          "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
          "Pneumothorax", "Support Devices"]
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
VALUES = {"": 0.0, "1.0": 1.0, "0.0": 0.0, "-1.0": -1.0, "1": 1.0, "0": 0.0, "-1": -1.0}
UNCERTAIN = {"zeros": 0, "ones": 1, "ignore": -1}
FIX = "restore the file from your PhysioNet download of MIMIC-CXR-JPG"


def image_path(subject_id: str, study_id: str, dicom_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


class MIMICCXR:
    def __init__(self, root: str, uncertain: str = "zeros", val: str = "ignore", views: list[str] | None = None,
                 image_size: int = 224, channels: int = 1, missing_images: str = "error",
                 train_size: int | None = None, test_size: int | None = None, image_shape: list[int] | None = None):
        if uncertain not in UNCERTAIN:
            raise ConfigError("dataset.uncertain", uncertain, f"must be one of {list(UNCERTAIN)}",
                              "set dataset.uncertain=zeros")
        if val not in ("ignore", "train"):
            raise ConfigError("dataset.val", val, "must be ignore or train", "set dataset.val=ignore")
        if missing_images not in ("error", "skip"):
            raise ConfigError("dataset.missing_images", missing_images, "must be error or skip",
                              "set dataset.missing_images=error")
        if views is not None and (isinstance(views, str) or not all(isinstance(v, str) for v in views)):
            raise ConfigError("dataset.views", views, "must be a list of ViewPosition values or null",
                              "set dataset.views=[PA,AP] or dataset.views=null")
        if image_size is None:  # the JPEGs differ in size: they cannot be stacked unresized
            raise ConfigError("dataset.image_size", None, "MIMIC-CXR images differ in size", "set dataset.image_size=224")
        check_image_options(channels, image_size)
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        self.root = Path(root).expanduser()
        self.uncertain, self.val, self.views, self.missing_images = uncertain, val, views, missing_images
        self.image_size, self.channels, self.train_size, self.test_size = image_size, channels, train_size, test_size
        self.image_shape = image_shape

    def _csv(self, name: str) -> Path:
        for candidate in (self.root / name, self.root / (name + ".gz")):
            if candidate.is_file():
                return candidate
        raise DataError(f"{name}[.gz] not found in {self.root}. Fix: set dataset.root to the MIMIC-CXR-JPG folder "
                        "that holds the CSVs and files/ (e.g. physionet.org/files/mimic-cxr-jpg/2.0.0).")

    def study_labels(self) -> dict[tuple[str, str], torch.Tensor]:
        """(subject_id, study_id) -> int64 (14,) labels, uncertain policy applied; every row checked."""
        path = self._csv(CHEXPERT_CSV)
        studies = {}
        for line, row in read_csv(path, ["subject_id", "study_id", *LABELS], "the CheXpert labels CSV", FIX):
            key = (_id(path, line, row, "subject_id"), _id(path, line, row, "study_id"))
            values = []
            for name in LABELS:
                raw = (row[name] or "").strip()
                if raw not in VALUES:
                    raise DataError(f"{path}, line {line}: {name} = {raw!r}; a label is 1.0, 0.0, -1.0 or blank. "
                                    f"Fix: {FIX}.")
                value = VALUES[raw]
                values.append(UNCERTAIN[self.uncertain] if value == -1 else value)
            if key in studies:
                raise DataError(f"{path}, line {line}: study {key[1]} of subject {key[0]} is listed twice. Fix: {FIX}.")
            studies[key] = torch.tensor(values, dtype=torch.int64)
        return studies

    def image_views(self) -> dict[str, str]:
        path = self._csv(METADATA_CSV)
        rows = read_csv(path, ["dicom_id", "ViewPosition"], "the metadata CSV", FIX)
        return {(row["dicom_id"] or "").strip(): (row["ViewPosition"] or "").strip() for _, row in rows}

    def records(self) -> dict[str, list[dict]]:
        """train / test image records (line, ids, labels), from every row of the split CSV, checked."""
        studies = self.study_labels()
        views = self.image_views() if self.views is not None else None
        path = self._csv(SPLIT_CSV)
        out, unlabelled, other_view = {"train": [], "test": []}, 0, 0
        target = {"train": "train", "test": "test", "validate": "train" if self.val == "train" else None}
        for line, row in read_csv(path, ["dicom_id", "study_id", "subject_id", "split"], "the split CSV", FIX):
            dicom_id = (row["dicom_id"] or "").strip()
            subject_id, study_id = _id(path, line, row, "subject_id"), _id(path, line, row, "study_id")
            split = (row["split"] or "").strip()
            if not dicom_id or "/" in dicom_id or split not in target:
                raise DataError(f"{path}, line {line}: dicom_id {dicom_id!r}, split {split!r}; expected an image id "
                                f"and one of train, validate, test. Fix: {FIX}.")
            if (subject_id, study_id) not in studies:
                unlabelled += 1
                continue
            if views is not None and views.get(dicom_id) not in self.views:
                other_view += 1
                continue
            if target[split] is not None:
                out[target[split]].append({"line": line, "dicom_id": dicom_id, "subject_id": subject_id,
                                           "study_id": study_id, "labels": studies[(subject_id, study_id)]})
        if unlabelled or other_view:
            log.info("mimic_cxr: left out %d images of unlabelled studies and %d of other views",
                     unlabelled, other_view)
        return out

    def load(self) -> Splits:
        records, split_csv = self.records(), self._csv(SPLIT_CSV)
        if self.missing_images == "skip":
            for name, recs in records.items():
                kept = [r for r in recs if (self.root / _path(r)).is_file()]
                if len(kept) < len(recs):
                    log.info("mimic_cxr: %d %s images are not under %s; skipped", len(recs) - len(kept), name, self.root)
                records[name] = kept
        picked = {}
        for name, size in (("train", self.train_size), ("test", self.test_size)):
            recs = records[name]
            picked[name] = [recs[i] for i in head_rows(len(recs), size).tolist()]
            if not picked[name]:
                raise DataError(f"no {name} images in {self.root} (after dataset.views / missing_images). "
                                "Fix: check dataset.root and dataset.views.")
            for r in picked[name]:  # all present before the first (slow) decode
                if not (self.root / _path(r)).is_file():
                    raise DataError(f"{split_csv}, line {r['line']}: image {self.root / _path(r)} not found. "
                                    "Fix: download it, or set dataset.missing_images=skip to use the images you have.")

        def split(recs) -> Split:
            x = stack_images([self.root / _path(r) for r in recs], self.channels, self.image_size,
                             lambda i: f"{split_csv}, line {recs[i]['line']}")
            meta = [{k: r[k] for k in ("subject_id", "study_id", "dicom_id")} for r in recs]
            return Split(x, torch.stack([r["labels"] for r in recs]), [_path(r) for r in recs], "image",
                         list(LABELS), meta)

        splits = Splits("mimic_cxr", split(picked["train"]), split(picked["test"]), list(LABELS))
        return splits.check_image_shape(self.image_shape)


def _path(record: dict) -> str:
    return image_path(record["subject_id"], record["study_id"], record["dicom_id"])


def _id(path: Path, line: int, row: dict, column: str) -> str:
    value = (row[column] or "").strip()
    if not value.isdigit():
        raise DataError(f"{path}, line {line}: {column} = {value!r}; expected digits. Fix: {FIX}.")
    return value
