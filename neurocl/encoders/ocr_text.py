"""Pages read by OCR (RapidOCR, PP-OCR ONNX models shipped in its wheel), then embedded by a text encoder.

`PageOCR` turns page tensors into text lines with their boxes; `OCRText` joins
the lines and hands them to any text encoder (MiniLM, HFText). `read()` exposes
the text itself, and `character_error_rate` measures it against a reference.
RapidOCR never downloads here: a missing model file is an error before it runs.

    python -m neurocl.run dataset=<a page dataset> encoder=ocr_text
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurocl.errors import ConfigError, DataError


def character_error_rate(hypothesis: str, reference: str) -> float:
    """Levenshtein distance (insertions, deletions, substitutions) / len(reference).

    An empty reference counts every hypothesis character as an insertion (the
    rate is then len(hypothesis)); it can exceed 1 when the hypothesis is long.
    """
    previous = list(range(len(reference) + 1))  # distances from the empty hypothesis prefix
    for i, h in enumerate(hypothesis, 1):
        current = [i]
        for j, r in enumerate(reference, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1] / max(len(reference), 1)


@dataclass
class Line:
    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the page


def page_to_numpy(page: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> uint8 (H, W) grey or (H, W, 3) BGR, as RapidOCR expects ndarrays."""
    x = (page.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if x.shape[0] == 1:
        return x[0]
    if x.shape[0] != 3:
        raise DataError(f"a page has {x.shape[0]} channels. Fix: pages must be grey (1) or RGB (3).")
    return np.ascontiguousarray(x.transpose(1, 2, 0)[:, :, ::-1])


def flatten(params: dict, prefix: str = "") -> dict:
    """{"Global": {"use_cls": False}} -> {"Global.use_cls": False}: RapidOCR takes dotted keys, Hydra nests them."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class PageOCR:
    """RapidOCR with the default PP-OCR models, or others set in `params` (RapidOCR's config keys, nested or
    dotted: {"Det": {"model_path": ...}} or {"Det.model_path": ...}). Pages are taken as upright: the
    angle classifier is off unless params turn it on ({"Global": {"use_cls": True}}, for rotated scans)."""

    STAGES = ("Det", "Cls", "Rec")

    def __init__(self, params: dict | None = None):
        from importlib.metadata import version

        try:
            from rapidocr import RapidOCR
        except ImportError as e:
            raise DataError("rapidocr is not installed. Fix: `pip install rapidocr onnxruntime`.") from e
        self.version = version("rapidocr")
        # No angle classifier by default: on upright pages it flips whole lines by 180 degrees and they read as
        # garbage (skimage.data.page(): CER 0.124 with it, 0.017 without; rendered pages: 0.17 vs 0.0).
        self.params = {"Global.log_level": "warning", "Global.use_cls": False, **flatten(params or {})}
        self.engine = RapidOCR(params=self.params)
        self.model_files = self._model_files()  # checked before RapidOCR would try to fetch a missing one
        self._digest = None

    def _model_files(self) -> dict[str, Path]:
        from rapidocr.inference_engine.base import FileInfo, InferSession

        cfg, files = self.engine.cfg, {}
        for stage in self.STAGES:
            c = cfg[stage]
            if c.model_path:
                path = Path(c.model_path)
            else:  # where RapidOCR looks for its default model of this version, language and size
                info = InferSession.get_model_url(FileInfo(engine_type=c.engine_type, ocr_version=c.ocr_version,
                                                           task_type=c.task_type, lang_type=c.lang_type,
                                                           model_type=c.model_type))
                path = Path(cfg.Global.model_root_dir) / Path(info["model_dir"]).name
            if not path.is_file():
                raise DataError(f"RapidOCR {stage} model not found at {path}; neurocl never downloads it. Fix: "
                                f"reinstall rapidocr=={self.version} (its wheel ships the default models), or set "
                                f"ocr_params={{{stage}.model_path: /path/to/model.onnx}}.")
            files[stage] = path
        if cfg.Rec.get("rec_keys_path"):
            files["rec_keys"] = Path(cfg.Rec.rec_keys_path)
        return files

    def cache_key(self) -> dict:
        if self._digest is None:
            self._digest = {}
            for stage, path in self.model_files.items():
                with path.open("rb") as f:
                    self._digest[stage] = {"file": path.name, "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
        return {"engine": "rapidocr", "version": self.version, "models": self._digest,
                "params": {k: str(v) for k, v in sorted(self.params.items())}}

    def lines(self, page: torch.Tensor) -> list[Line]:
        """Text lines of one (C, H, W) page, in RapidOCR's reading order (top to bottom, left to right)."""
        result = self.engine(page_to_numpy(page))
        if not getattr(result, "txts", None) or getattr(result, "boxes", None) is None:
            return []  # a blank page, or nothing above the text score
        out = []
        for text, quad in zip(result.txts, result.boxes):
            quad = np.asarray(quad, dtype=float)
            out.append(Line(text, (quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max())))
        return out


class OCRText:
    """OCR text of each page (lines joined by newlines), embedded by `text_encoder`; accepts pages.

    The features are the text encoder's, so "device" and "dtype" are its own;
    the OCR itself runs on the CPU through onnxruntime.
    """

    accepts = ("page",)

    def __init__(self, text_encoder, name: str = "ocr_text", batch_size: int = 8, ocr_params: dict | None = None):
        if "text" not in getattr(text_encoder, "accepts", ()):
            raise ConfigError("encoder.text_encoder", type(text_encoder).__name__, "is not a text encoder",
                              "set encoder.text_encoder._target_=neurocl.encoders.text.MiniLM")
        if batch_size <= 0:
            raise ConfigError("encoder.batch_size", batch_size, "must be positive", "set encoder.batch_size=8")
        self.text_encoder, self.name, self.batch_size = text_encoder, name, batch_size
        self.ocr = PageOCR(ocr_params)
        self.dim = text_encoder.dim

    def cache_key(self) -> dict:
        text_key = self.text_encoder.cache_key()
        return {"name": self.name, "ocr": self.ocr.cache_key(), "join": "lines by newline",
                "text_encoder": text_key, "device": text_key["device"], "dtype": text_key["dtype"]}

    def read(self, pages) -> list[str]:
        """The OCR text of each page of a (n, C, H, W) tensor or a list of (C, H, W) tensors."""
        return ["\n".join(line.text for line in self.ocr.lines(page)) for page in pages]

    @torch.no_grad()
    def encode(self, pages) -> torch.Tensor:
        return self.text_encoder.encode(self.read(pages))
