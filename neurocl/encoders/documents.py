"""Document-page encoders from local transformers models: Donut (pixels) and LayoutLMv3 (words, layout, pixels).

Both take a directory saved with save_pretrained (config, weights, processor
files); nothing is fetched from a hub. Pages arrive as (n, C, H, W) float
tensors in [0, 1] (or a list of (C, H, W) pages of different sizes); grey pages
are copied to three channels and handed to the model's own image processor
with do_rescale=False (they are already in [0, 1]).

    python -m neurocl.run dataset=<a page dataset> encoder=donut encoder.path=/models/donut-base
    python -m neurocl.run dataset=<a page dataset> encoder=layoutlmv3 encoder.path=/models/layoutlmv3-base
"""

from pathlib import Path

import torch

from neurocl.encoders.base import autocast, dtype_name, unit_norm
from neurocl.encoders.ocr_text import Line, PageOCR
from neurocl.encoders.text import directory_digest
from neurocl.errors import ConfigError, DataError
from neurocl.runtime import resolve_device


def model_dir(path: str | None, key: str = "encoder.path") -> Path:
    if not path:
        raise ConfigError(key, path, "needs a local transformers model directory",
                          f"set {key}=/path/to/model (saved with save_pretrained); neurocl never downloads models")
    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise DataError(f"no transformers model at {directory} (config.json missing). Fix: point {key} at a "
                        "directory saved with save_pretrained(), with its processor files.")
    return directory


def rgb_pages(pages) -> list[torch.Tensor]:
    """(n, C, H, W) tensor or list of (C, H, W) -> list of float (3, H, W) on the CPU (processors work there)."""
    out = []
    for page in pages:
        page = page.detach().float().cpu()
        out.append(page.expand(3, -1, -1) if page.shape[0] == 1 else page)
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return hidden.float().mean(1)
    mask = mask.unsqueeze(-1).float()
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1)


def words_and_boxes(lines: list[Line], width: int, height: int) -> tuple[list[str], list[list[int]]]:
    """Words of OCR lines with boxes normalised to 0-1000, as LayoutLM models expect.

    RapidOCR boxes whole lines; each word gets the line's vertical extent and a
    horizontal slice proportional to its character offsets within the line.
    """
    words, boxes = [], []
    for line in lines:
        x0, y0, x1, y1 = line.box
        per_char = (x1 - x0) / max(len(line.text), 1)
        start = 0
        for word in line.text.split():
            start = line.text.index(word, start)
            box = (x0 + start * per_char, y0, x0 + (start + len(word)) * per_char, y1)
            start += len(word)
            words.append(word)
            boxes.append([min(max(round(1000 * v / size), 0), 1000)
                          for v, size in zip(box, (width, height, width, height))])
    return words, boxes


class Donut:
    """Mean-pooled last hidden states of Donut's Swin encoder, unit norm; accepts pages.

    `path` holds a VisionEncoderDecoderModel (the released Donut checkpoints:
    only its encoder is kept) or a DonutSwinModel, plus its image processor
    (resize keeping the aspect ratio, pad, standardise). `image_size` [height,
    width] overrides the processor's size: Donut's 2560x1920 is slow on a CPU.
    """

    accepts = ("page",)

    def __init__(self, path: str | None, name: str = "donut", image_size: list[int] | None = None,
                 batch_size: int = 8, normalize: bool = True, device: str = "auto"):
        self.path = model_dir(path)
        if batch_size <= 0:
            raise ConfigError("encoder.batch_size", batch_size, "must be positive", "set encoder.batch_size=8")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 32):
            raise ConfigError("encoder.image_size", image_size, "must be [height, width], each at least 32 px",
                              "set encoder.image_size=[1280,960] or null (the processor's size)")
        from transformers import AutoConfig, AutoImageProcessor, DonutSwinModel, VisionEncoderDecoderModel

        kind = AutoConfig.from_pretrained(self.path, local_files_only=True).model_type
        if kind == "vision-encoder-decoder":
            model = VisionEncoderDecoderModel.from_pretrained(self.path, local_files_only=True).encoder
        elif kind == "donut-swin":
            model = DonutSwinModel.from_pretrained(self.path, local_files_only=True)
        else:
            raise DataError(f"{self.path} holds a {kind!r} model, not Donut. Fix: point encoder.path at a Donut "
                            "checkpoint (vision-encoder-decoder or donut-swin).")
        self.processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.image_size = list(image_size) if image_size is not None else None
        self.name, self.batch_size, self.normalize = name, batch_size, normalize
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.dim = self.model.config.hidden_size

    def cache_key(self) -> dict:
        return {"name": self.name, "model_sha256": directory_digest(self.path), "image_size": self.image_size,
                "preprocess": "grey->rgb,processor(do_rescale=False)", "pooling": "mean over encoder tokens",
                "normalize": self.normalize, "device": self.device.type, "dtype": dtype_name(self.device)}

    @torch.no_grad()
    def encode(self, pages) -> torch.Tensor:
        size = {"height": self.image_size[0], "width": self.image_size[1]} if self.image_size else None
        kwargs = {"size": size} if size else {}
        pixels = self.processor(rgb_pages(pages), do_rescale=False, input_data_format="channels_first",
                                return_tensors="pt", **kwargs).pixel_values.to(self.device)
        with autocast(self.device):
            features = mean_pool(self.model(pixel_values=pixels).last_hidden_state)
        return unit_norm(features) if self.normalize else features


class LayoutLMv3:
    """LayoutLMv3 features of a page: mean over its text and image-patch tokens, unit norm; accepts pages.

    With apply_ocr (the default) the words and their boxes come from RapidOCR
    (`PageOCR`; the model's processor would call Tesseract, which neurocl does
    not use); with apply_ocr false the model sees the pixels only. `path` needs
    the model, its tokenizer and its image processor.
    """

    accepts = ("page",)

    def __init__(self, path: str | None, name: str = "layoutlmv3", apply_ocr: bool = True, max_length: int = 512,
                 batch_size: int = 8, normalize: bool = True, ocr_params: dict | None = None, device: str = "auto"):
        self.path = model_dir(path)
        if batch_size <= 0:
            raise ConfigError("encoder.batch_size", batch_size, "must be positive", "set encoder.batch_size=8")
        from transformers import AutoImageProcessor, AutoTokenizer, LayoutLMv3Model

        self.model = LayoutLMv3Model.from_pretrained(self.path, local_files_only=True).eval()
        positions = self.model.config.max_position_embeddings - 2  # RoBERTa-style offset of the padding index
        if apply_ocr and not 0 < max_length <= positions:
            raise ConfigError("encoder.max_length", max_length, f"this model takes 1 to {positions} tokens",
                              f"set encoder.max_length={positions}")
        self.image_processor = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True) if apply_ocr else None
        self.ocr = PageOCR(ocr_params) if apply_ocr else None
        self.name, self.apply_ocr, self.max_length = name, apply_ocr, max_length
        self.batch_size, self.normalize = batch_size, normalize
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.dim = self.model.config.hidden_size

    def cache_key(self) -> dict:
        key = {"name": self.name, "model_sha256": directory_digest(self.path), "apply_ocr": self.apply_ocr,
               "preprocess": "grey->rgb,processor(do_rescale=False)", "pooling": "mean over text and patch tokens",
               "normalize": self.normalize, "device": self.device.type, "dtype": dtype_name(self.device)}
        if self.apply_ocr:
            key.update(max_length=self.max_length, ocr=self.ocr.cache_key(),
                       word_boxes="line box split by character offsets, 0-1000")
        return key

    @torch.no_grad()
    def encode(self, pages) -> torch.Tensor:
        pages = rgb_pages(pages)
        pixels = self.image_processor(pages, do_rescale=False, apply_ocr=False, input_data_format="channels_first",
                                      return_tensors="pt").pixel_values.to(self.device)
        inputs, text_mask = {"pixel_values": pixels}, None
        if self.apply_ocr:
            words, boxes = zip(*(words_and_boxes(self.ocr.lines(p), p.shape[2], p.shape[1]) for p in pages))
            tokens = self.tokenizer(list(words), boxes=list(boxes), padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            inputs.update(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], bbox=tokens["bbox"])
            text_mask = tokens["attention_mask"]
        with autocast(self.device):
            hidden = self.model(**inputs).last_hidden_state
        mask = torch.ones(hidden.shape[:2], device=hidden.device)  # image patches (and their CLS) all count
        if text_mask is not None:
            mask[:, :text_mask.shape[1]] = text_mask
        features = mean_pool(hidden, mask)
        return unit_norm(features) if self.normalize else features
