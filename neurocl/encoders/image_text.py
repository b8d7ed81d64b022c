"""Image-question pairs (VQA) as one concept: the image's and the text's embeddings, fused.

    z = [ sqrt(1 - w) * u(image_encoder(image)),  sqrt(w) * u(text_encoder(text)) ]

u() scales to unit norm, so each part's share of a cosine is fixed by `text_weight` w whatever the encoders'
scales: cos(z, z') = (1 - w) cos(image, image') + w cos(text, text'). The same image asked two questions
differs only in the text part, two images asked the same question only in the image part.
"""

import math

import torch

from neurocl.data.base import ImageText
from neurocl.encoders.base import unit_norm
from neurocl.errors import ConfigError


class ImageTextFusion:
    accepts = ("image_text",)

    def __init__(self, image, text, text_weight: float = 0.5, batch_size: int = 64):
        if not 0 <= text_weight <= 1:
            raise ConfigError("encoder.text_weight", text_weight, "must be in [0, 1]", "set encoder.text_weight=0.5")
        for part, encoder, modality in (("image", image, "image"), ("text", text, "text")):
            if modality not in encoder.accepts:
                raise ConfigError(f"encoder.{part}", encoder.name, f"must encode {modality} samples",
                                  f"choose a {modality} encoder for encoder.{part} (conf/encoder/)")
        self.image, self.text, self.text_weight, self.batch_size = image, text, text_weight, batch_size
        self.name = f"{image.name}+{text.name}"
        self.dim = image.dim + text.dim

    def cache_key(self) -> dict:
        image, text = self.image.cache_key(), self.text.cache_key()
        return {"name": "image_text_fusion", "image": image, "text": text, "text_weight": self.text_weight,
                "fusion": "concat of unit-norm parts", "device": f"{image['device']}+{text['device']}",
                "dtype": f"{image['dtype']}+{text['dtype']}"}

    @torch.no_grad()
    def encode(self, batch: ImageText) -> torch.Tensor:
        image = unit_norm(self.image.encode(batch.images).float().cpu())
        text = unit_norm(self.text.encode(list(batch.texts)).float().cpu())
        return torch.cat([math.sqrt(1 - self.text_weight) * image, math.sqrt(self.text_weight) * text], dim=1)
