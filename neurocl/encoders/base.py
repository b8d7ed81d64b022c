"""The encoder contract and the batched, progress-reporting feature extraction."""

import logging
from contextlib import nullcontext
from typing import Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurocl.data.base import Split
from neurocl.errors import ConfigError, check_finite

log = logging.getLogger(__name__)


class Encoder(Protocol):
    name: str
    dim: int
    batch_size: int
    accepts: tuple[str, ...]  # the modalities it encodes (neurocl.data.base.MODALITIES)

    def cache_key(self) -> dict:
        """Everything that changes the features: model, weights, preprocessing, and the
        "device" type and compute "dtype" it runs with (bf16 on a GPU is not float32 on a CPU)."""

    def encode(self, batch) -> torch.Tensor:
        """A batch of samples of an accepted modality -> (n, dim) features."""


def unit_norm(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=1)


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU (fast; the cache keys it apart), float32 on a CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def dtype_name(device: torch.device) -> str:
    return str(compute_dtype(device)).removeprefix("torch.")


def autocast(device: torch.device):
    dtype = compute_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def check_accepts(encoder: Encoder, modality: str, dataset: str):
    """A text encoder on an image dataset fails here, before anything is encoded."""
    if modality not in encoder.accepts:
        raise ConfigError("encoder", encoder.name, f"it encodes {'/'.join(encoder.accepts)} samples, but {dataset} "
                          f"holds {modality} samples", f"choose an encoder that accepts {modality} (conf/encoder/)")


@torch.no_grad()
def encode_split(encoder: Encoder, split: Split, desc: str = "encoding") -> torch.Tensor:
    """Encode a whole split in batches; returns finite float32 features on the CPU."""
    check_accepts(encoder, split.modality, "this split")
    chunks = []
    log.info("%s: %d samples", desc, len(split))  # the bar below shows only on a terminal; a log says it too
    with tqdm(total=len(split), desc=desc, unit="sample", leave=False, disable=None) as progress:  # None: terminals only
        for _, batch in split.batches(encoder.batch_size):
            chunks.append(encoder.encode(batch).float().cpu())
            progress.update(len(chunks[-1]))
    features = torch.cat(chunks) if chunks else torch.empty(0, encoder.dim)
    check_finite(features, f"features from encoder {encoder.name}")
    return features
