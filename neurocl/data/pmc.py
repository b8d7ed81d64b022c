"""A folder of PDF papers (e.g. PMC open-access articles), one sample per page, classes by subfolder.

The user brings their own PDFs, sorted into one folder per class:

    root/
      oncology/PMC1234567.pdf
      oncology/PMC2345678.pdf
      cardiology/PMC3456789.pdf
      ...

Labels come from the folder names (classes sorted by name); a PDF directly under root, or a class
folder without PDFs, is an error. Files are read with pypdfium2 (PDFium).

Each page is a sample:
  - pixels: the page rendered in grey at `scale` (1.0 = 72 dpi), resized to fit `page_size` [H, W]
    keeping its aspect ratio and centred on a white canvas: float32 (N, 1, H, W) in [0, 1], 1 = white;
  - text: the page's text layer (PDFium); a page without one (a scan) is read by OCR (rapidocr, the
    PP-OCR ONNX models inside the package, on a render at `ocr_scale`) unless `ocr: false`, when its
    text stays empty. Lines are kept; runs of spaces are collapsed.
`content: pixels` gives "page" splits (the text is in meta), `content: text` gives "text" splits of the
page texts (pages with no text at all are left out: they have nothing to encode).

Train/test split by paper, never by page (pages of one paper look alike, so splitting a paper would
test on its training pages): stratified over classes, `test_fraction` 0.3, seed 0 (fixed). Sample ids
are "<class>/<file>#page=<n>" (n from 1, as in a PDF link); meta per page: file (relative to root),
page, text, text_source (layer | ocr | none).

OCR costs about 1-3 s a page on two CPU cores; `ocr: false` skips it (pages without a text layer then
have empty text).
"""

from pathlib import Path

import numpy as np
import torch

from neurocl.data.base import Split, Splits
from neurocl.errors import ConfigError, DataError

CONTENTS = ("pixels", "text")


def clean_text(text: str) -> str:
    """PDFium's \\r\\n line ends and control characters out, runs of spaces collapsed, lines kept."""
    lines = (" ".join("".join(c if c.isprintable() else " " for c in line).split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def fit(image, size: tuple[int, int]) -> torch.Tensor:
    """A grey PIL image scaled to fit (H, W), aspect kept, centred on white -> float32 (1, H, W) in [0, 1]."""
    from PIL import Image

    height, width = size
    ratio = min(height / image.height, width / image.width)
    new = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
    canvas = Image.new("L", (width, height), 255)
    canvas.paste(image.convert("L").resize(new, Image.Resampling.LANCZOS),
                 ((width - new[0]) // 2, (height - new[1]) // 2))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)[None]


class PMCPapers:
    def __init__(self, root: str, content: str = "pixels", page_size: list[int] = (256, 192), scale: float = 1.0,
                 ocr: bool = True, ocr_scale: float = 2.0, max_pages: int | None = None, test_fraction: float = 0.3):
        if not isinstance(root, str) or not root:
            raise ConfigError("dataset.root", root, "must be a folder of class folders of PDFs",
                              "set dataset.root=/path/to/papers (root/<class>/<paper>.pdf)")
        if content not in CONTENTS:
            raise ConfigError("dataset.content", content, f"must be one of {CONTENTS}", "set dataset.content=pixels")
        page_size = list(page_size)
        if len(page_size) != 2 or not all(isinstance(s, int) and s > 0 for s in page_size):
            raise ConfigError("dataset.page_size", page_size, "must be [height, width] in pixels",
                              "set dataset.page_size=[256,192]")
        for key, value in (("dataset.scale", scale), ("dataset.ocr_scale", ocr_scale)):
            if not isinstance(value, (int, float)) or not 0 < value <= 10:
                raise ConfigError(key, value, "must be a render scale in (0, 10] (1 = 72 dpi)", f"set {key}=1.0")
        if not isinstance(ocr, bool):
            raise ConfigError("dataset.ocr", ocr, "must be true or false", "set dataset.ocr=true")
        if max_pages is not None and (not isinstance(max_pages, int) or max_pages < 1):
            raise ConfigError("dataset.max_pages", max_pages, "must be a positive integer or null (every page)",
                              "set dataset.max_pages=null")
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)",
                              "set dataset.test_fraction=0.3")
        self.root, self.content, self.page_size = Path(root).expanduser(), content, tuple(page_size)
        self.scale, self.ocr, self.ocr_scale, self.max_pages = scale, ocr, ocr_scale, max_pages
        self.test_fraction = test_fraction
        self._engine = None

    def papers(self) -> tuple[list[Path], list[int], list[str]]:
        """The PDFs under root/<class>/, their class indices and the class names (sorted)."""
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder. Fix: set dataset.root to a folder holding one "
                            "subfolder of PDFs per class (root/<class>/<paper>.pdf).")
        is_pdf = lambda p: p.is_file() and p.suffix.lower() == ".pdf"
        loose = sorted(p.name for p in self.root.iterdir() if is_pdf(p))
        if loose:
            raise DataError(f"{self.root} holds PDFs outside a class folder ({', '.join(loose[:3])}). "
                            "Fix: move each into root/<class>/, the class is the folder name.")
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files, labels = [], []
        for c, name in enumerate(names):
            pdfs = sorted(p for p in (self.root / name).iterdir() if is_pdf(p))
            if not pdfs:
                raise DataError(f"{self.root / name} holds no PDFs. Fix: add the papers of class {name!r} "
                                "or remove the folder.")
            files += pdfs
            labels += [c] * len(pdfs)
        if len(names) < 2:
            raise DataError(f"{self.root} has {len(names)} class folder(s). Fix: sort the PDFs into at least "
                            "two subfolders, one per class (root/<class>/<paper>.pdf).")
        return files, labels, names

    def ocr_text(self, page) -> str:
        if self._engine is None:  # the models load once (about 2 s), and only when a page needs them
            try:
                from rapidocr import RapidOCR
            except ImportError as e:
                raise DataError(f"{self.root}: a page has no text layer and OCR needs rapidocr, which is not "
                                "installed. Fix: `pip install rapidocr onnxruntime`, or set dataset.ocr=false.") from e
            self._engine = RapidOCR(params={"Global.log_level": "error"})
        image = page.render(scale=self.ocr_scale, grayscale=True).to_numpy()
        result = self._engine(np.ascontiguousarray(image))
        return "\n".join(result.txts or ())

    def read_pdf(self, path: Path, label: int) -> list[tuple]:
        """(pixels or None, label, id, meta) for each page of one PDF."""
        import pypdfium2 as pdfium

        name = path.relative_to(self.root).as_posix()
        try:
            pdf = pdfium.PdfDocument(path)
        except (pdfium.PdfiumError, OSError) as e:
            raise DataError(f"{path}: cannot open it as a PDF ({e}). Fix: re-download it, or remove it if it "
                            "is damaged or password-protected.") from e
        pages = []
        try:
            if len(pdf) == 0:
                raise DataError(f"{path}: the PDF has no pages. Fix: re-download it or remove it.")
            for i in range(min(len(pdf), self.max_pages or len(pdf))):
                try:
                    page = pdf[i]
                    text, source = clean_text(page.get_textpage().get_text_range()), "layer"
                    if not text:
                        text, source = (self.ocr_text(page), "ocr") if self.ocr else ("", "none")
                    pixels = None
                    if self.content == "pixels":
                        pixels = fit(page.render(scale=self.scale, grayscale=True).to_pil(), self.page_size)
                except pdfium.PdfiumError as e:
                    raise DataError(f"{path}: cannot read page {i + 1} ({e}). Fix: re-download the file "
                                    "or remove it.") from e
                meta = {"file": name, "page": i + 1, "text": text, "text_source": source}
                pages.append((pixels, label, f"{name}#page={i + 1}", meta))
        finally:
            pdf.close()
        return pages

    def make_split(self, pages: list[tuple]) -> Split:
        if self.content == "text":
            pages = [p for p in pages if p[3]["text"]]  # nothing to encode on a page without text
        labels = torch.tensor([p[1] for p in pages], dtype=torch.int64)
        ids, meta = [p[2] for p in pages], [p[3] for p in pages]
        if self.content == "text":
            return Split([m["text"] for m in meta], labels, ids, "text", meta=meta)
        data = torch.stack([p[0] for p in pages]) if pages else torch.zeros(0, 1, *self.page_size)
        return Split(data, labels, ids, "page", meta=meta)

    def load(self) -> Splits:
        from neurocl.data.base import stratified_split

        files, labels, names = self.papers()
        try:  # split papers, not pages: pages of one paper stay together
            train, test = stratified_split(torch.tensor(labels), self.test_fraction, stratify=True)
        except ValueError as e:  # a class with one paper, or fewer test papers than classes
            counts = {n: labels.count(c) for c, n in enumerate(names)}
            raise DataError(f"{self.root}: cannot split the papers {counts} by class with test_fraction "
                            f"{self.test_fraction} ({e}). Fix: give each class at least 2 papers, or raise "
                            "dataset.test_fraction.") from e
        pages = lambda rows: [page for i in rows.tolist() for page in self.read_pdf(files[i], labels[i])]
        splits = Splits("pmc", self.make_split(pages(train)), self.make_split(pages(test)), names)
        if self.content == "text" and not (len(splits.train) and len(splits.test)):
            raise DataError(f"{self.root}: no text on the pages of the {'train' if not len(splits.train) else 'test'} "
                            "papers. Fix: set dataset.ocr=true to read scanned pages, or content=pixels.")
        return splits
