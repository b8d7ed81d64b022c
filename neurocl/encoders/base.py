"""The encoder contract and the batched, progress-reporting feature extraction."""

from typing import Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurocl.data.base import ImageSplit
from neurocl.errors import check_finite


class Encoder(Protocol):
    name: str
    dim: int
    batch_size: int

    def cache_key(self) -> dict:
        """Everything that changes the features: model, weights, preprocessing."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pixels in [0, 1] -> (N, dim) float32 features."""


def unit_norm(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features.float(), dim=1)


@torch.no_grad()
def encode_split(encoder: Encoder, split: ImageSplit, desc: str = "encoding") -> torch.Tensor:
    """Encode a whole split in batches; returns finite float32 features on the CPU."""
    chunks = []
    for start in tqdm(range(0, len(split), encoder.batch_size), desc=desc, unit="batch", leave=False):
        chunks.append(encoder.encode(split.images[start:start + encoder.batch_size]).float().cpu())
    features = torch.cat(chunks) if chunks else torch.empty(0, encoder.dim)
    check_finite(features, f"features from encoder {encoder.name}")
    return features
