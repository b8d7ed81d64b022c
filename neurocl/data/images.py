"""Reading medical images from their files: JPEG/PNG (Pillow) and DICOM (pydicom), plus `DicomFolder`.

`read_image(path, channels, size)` returns a float32 tensor (C, H, W) in [0, 1].

DICOM pixels are turned into display values the way a viewer does (DICOM PS3.3 C.11):
  1. the modality LUT: stored values -> physical units (RescaleSlope/RescaleIntercept, e.g. CT Hounsfield units);
  2. the VOI LUT or window (WindowCenter/WindowWidth) when the file has one, scaled by the window's output
     range; without one, min-max over the image;
  3. MONOCHROME1 (0 = white) is inverted, so that bone is bright as in MONOCHROME2.
Colour DICOMs (RGB, YBR decoded to RGB by pydicom) are scaled by their bit depth. Multi-frame files are refused:
a sample is one image.

`DicomFolder`: a folder of .dcm files and a CSV with the columns `file` (path relative to the folder) and
`label` (a class name); an optional `split` column (train/test) fixes the split, else a seeded, per-class split.
"""

import csv
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neurocl.data.base import Split, Splits, check_size, head_rows
from neurocl.errors import ConfigError, DataError

DICOM_SUFFIXES = (".dcm", ".dicom")


def check_image_options(channels, size, prefix: str = "dataset"):
    if channels not in (1, 3):
        raise ConfigError(f"{prefix}.channels", channels, "must be 1 (grey) or 3 (RGB)", f"set {prefix}.channels=1")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ConfigError(f"{prefix}.image_size", size, "must be a positive integer or null (keep the file's size)",
                          f"set {prefix}.image_size=224")


def read_image(path, channels: int = 1, size: int | None = None) -> torch.Tensor:
    """Image file `path` as a float32 (channels, H, W) tensor in [0, 1]; resized to size x size when size is set."""
    check_image_options(channels, size, "read_image")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found. Fix: restore the file, or drop the row that names it.")
    reader = _read_dicom if path.suffix.lower() in DICOM_SUFFIXES else _read_pil
    try:
        array = reader(path, size)  # float (H, W) or (H, W, 3) in [0, 1]
    except DataError:
        raise
    except Exception as e:  # Pillow and pydicom raise many types for damaged files; all mean the same to a user
        raise DataError(f"{path}: cannot read the image ({type(e).__name__}: {e}). "
                        "Fix: re-download or re-export the file, or drop the row that names it.") from e
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    if x.shape[0] == 3 and channels == 1:  # ITU-R 601 luma, the same weights as Pillow's convert("L")
        x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
    elif x.shape[0] == 1 and channels == 3:
        x = x.expand(3, -1, -1)
    if size is not None and tuple(x.shape[1:]) != (size, size):
        # antialias: chest X-rays are ~10x larger than the target; plain bilinear would alias fine structure
        x = F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).squeeze(0)
    return x.clamp(0, 1).contiguous()


def _read_pil(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if size is not None and img.format == "JPEG":
            img.draft(img.mode, (size, size))  # decode at a reduced DCT scale (>= size): 5-10x faster for big CXRs
        img.load()
        if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit PNGs: scale by 16 bits; convert("L") would clip
            return np.asarray(img, dtype=np.float64) / 65535.0
        if img.mode == "F":  # float TIFFs have no fixed range
            a = np.asarray(img, dtype=np.float64)
            return (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros(a.shape)
        rgb = img.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P", "PA", "LAB", "HSV")
        return np.asarray(img.convert("RGB" if rgb else "L"), dtype=np.float64) / 255.0


def _read_dicom(path: Path, size: int | None) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{path}: a DICOM file without pixel data (a report or structure set?). "
                        "Fix: keep only image DICOMs in the folder, or drop the row that names it.")
    try:
        arr = ds.pixel_array  # raw stored values; YBR colour is converted to RGB by pydicom
    except Exception as e:
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        fix = ("install a decoder for it: pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
               if syntax is not None and syntax.is_compressed else "re-download or re-export the file")
        raise DataError(f"{path}: cannot decode the pixel data{f' ({syntax.name})' if syntax else ''} "
                        f"({type(e).__name__}: {e}). Fix: {fix}, or drop the row that names it.") from e
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{path}: a multi-frame DICOM ({ds.NumberOfFrames} frames); a sample is one image. "
                        "Fix: export one frame per file (e.g. the middle slice).")
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        return arr.astype(np.float64) / (2 ** int(ds.get("BitsStored", 8)) - 1)
    arr = apply_modality_lut(arr, ds)
    if _has_voi(ds):
        if _has_voi_table(ds) and np.array_equal(arr, np.round(arr)):
            arr = arr.astype(np.int64)  # a VOI table is indexed by integers (pydicom warns on floats)
        lo, hi = _voi_range(ds)
        arr = apply_voi_lut(arr, ds)
    else:
        lo, hi = float(arr.min()), float(arr.max())
    arr = (np.asarray(arr, dtype=np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(arr.shape)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1: the lowest value is white; invert so bone is bright, as in MONOCHROME2
    return arr


def _has_voi_table(ds) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None


def _has_voi(ds) -> bool:
    return _has_voi_table(ds) or (ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None)


def _voi_range(ds) -> tuple[float, float]:
    """The output range of the file's VOI transform, so that the window, not the image, sets black and white."""
    from pydicom.pixels import apply_voi_lut

    if _has_voi_table(ds):  # apply_voi_lut prefers the table: its outputs over its whole input domain
        entries, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
        out = apply_voi_lut(np.arange(first, first + (entries or 2 ** 16), dtype=np.int64), ds)
    else:  # a window maps everything below / above it to its fixed output minimum / maximum
        with np.errstate(over="ignore"):
            out = apply_voi_lut(np.array([-1e30, 1e30]), ds)
    return float(np.min(out)), float(np.max(out))


def stack_images(paths, channels: int, size: int | None, where) -> torch.Tensor:
    """(N, C, H, W) from image files; `where(i)` names the source row of paths[i] for error messages."""
    out = None
    for i, path in enumerate(paths):
        try:
            x = read_image(path, channels, size)
        except DataError as e:
            raise DataError(f"{where(i)}: {e}") from e
        if out is None:  # filled in place: a list then torch.stack would need twice the memory (GBs for CXRs)
            out = torch.empty(len(paths), *x.shape)
        elif x.shape != out.shape[1:]:
            raise DataError(f"{where(i)}: image {path} is {list(x.shape)} but {paths[0]} is "
                            f"{list(out.shape[1:])}. Fix: set dataset.image_size (e.g. 224) to resize all images.")
        out[i] = x
    return torch.zeros(0, channels, size or 1, size or 1) if out is None else out


def read_csv(path: Path, columns, what: str, fix: str) -> list[tuple[int, dict]]:
    """(line number, row) of CSV `path`, after checking that its header holds `columns`."""
    if not path.is_file():
        raise DataError(f"{what} {path} not found. Fix: {fix}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open  # PhysioNet ships its CSVs gzipped
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's CSVs start with a BOM
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: no column(s) {missing} in the header {reader.fieldnames}. "
                                f"Fix: {what} needs the columns {list(columns)}.")
            rows = [(reader.line_num, row) for row in reader]
    except (csv.Error, UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable CSV ({e}). Fix: {fix}") from e
    return rows


class DicomFolder:
    """Single-label classification from a folder of DICOM files and a labels CSV (file,label[,split])."""

    def __init__(self, root: str, labels_csv: str | None = None, class_names: list[str] | None = None,
                 test_fraction: float = 0.25, seed: int = 0, channels: int = 1, image_size: int | None = 224,
                 train_size: int | None = None, test_size: int | None = None, image_shape: list[int] | None = None):
        check_image_options(channels, image_size)
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)", "set dataset.test_fraction=0.25")
        if class_names is not None and len(set(map(str, class_names))) != len(class_names):
            raise ConfigError("dataset.class_names", list(class_names), "repeats a name", "list each class once")
        self.root = Path(root).expanduser()
        self.labels_csv = Path(labels_csv).expanduser() if labels_csv else self.root / "labels.csv"
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.test_fraction, self.seed, self.channels, self.image_size = test_fraction, seed, channels, image_size
        self.train_size, self.test_size, self.image_shape = train_size, test_size, image_shape

    def rows(self):
        """(line, file, label, split or None) for every CSV row, all checked before any image is read."""
        rows = read_csv(self.labels_csv, ("file", "label"), "the labels CSV",
                        "write a CSV with the header `file,label` (optionally `,split`), one row per DICOM file, "
                        "and set dataset.labels_csv=/path/to/it")
        out, seen = [], {}
        for line, row in rows:
            where = f"{self.labels_csv}, line {line}"
            name, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
            split = (row.get("split") or "").strip().lower() or None
            if not name or not label:
                raise DataError(f"{where}: empty file or label. Fix: every row needs both.")
            if split not in (None, "train", "test"):
                raise DataError(f"{where}: split {split!r}. Fix: train, test, or leave it empty.")
            if name in seen:
                raise DataError(f"{where}: {name} is listed again (first on line {seen[name]}). Fix: one row per file.")
            if not (self.root / name).is_file():
                raise DataError(f"{where}: image {self.root / name} not found. "
                                f"Fix: file paths are relative to dataset.root={self.root}.")
            seen[name] = line
            out.append((line, name, label, split))
        if not out:
            raise DataError(f"{self.labels_csv} has no rows. Fix: one row per DICOM file.")
        if any(r[3] for r in out) and not all(r[3] for r in out):
            line = next(r[0] for r in out if not r[3])
            raise DataError(f"{self.labels_csv}, line {line}: empty split while other rows have one. "
                            "Fix: give every row a split, or drop the split column.")
        return out

    def load(self) -> Splits:
        rows = self.rows()
        found = {r[2] for r in rows}
        names = self.class_names or sorted(found, key=int if all(s.isdigit() for s in found) else None)
        index = {name: c for c, name in enumerate(names)}
        for line, _, label, _ in rows:
            if label not in index:
                raise DataError(f"{self.labels_csv}, line {line}: label {label!r} is not in dataset.class_names "
                                f"{names}. Fix: add it there, or correct the row.")
        labels = torch.tensor([index[r[2]] for r in rows], dtype=torch.int64)
        if rows[0][3]:
            test = torch.tensor([r[3] == "test" for r in rows])
        else:  # per class, so that every class with 2+ files has test samples; seeded: part of the dataset
            test = torch.zeros(len(rows), dtype=torch.bool)
            g = torch.Generator().manual_seed(self.seed)
            for c in range(len(names)):
                members = (labels == c).nonzero().flatten()
                members = members[torch.randperm(len(members), generator=g)]
                n_test = max(1, round(self.test_fraction * len(members))) if len(members) > 1 else 0
                test[members[:n_test]] = True

        def split(mask, size):
            rows_kept = mask.nonzero().flatten()
            rows_kept = rows_kept[head_rows(len(rows_kept), size)]
            picked = [rows[i] for i in rows_kept.tolist()]
            x = stack_images([self.root / r[1] for r in picked], self.channels, self.image_size,
                             lambda i: f"{self.labels_csv}, line {picked[i][0]}")
            return Split(x, labels[rows_kept], [r[1] for r in picked])

        splits = Splits("dicom_folder", split(~test, self.train_size), split(test, self.test_size), names)
        return splits.check_image_shape(self.image_shape)
