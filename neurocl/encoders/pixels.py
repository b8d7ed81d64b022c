"""Raw pixels as features: flattened, optionally resized, unit norm."""

import torch
import torch.nn.functional as F

from neurocl.encoders.base import unit_norm
from neurocl.errors import ConfigError


class Pixels:
    name = "pixels"
    accepts = ("image",)

    def __init__(self, image_shape: tuple[int, int, int], resolution: int | None = None,
                 normalize: bool = True, batch_size: int = 4096):
        if resolution is not None and resolution <= 0:
            raise ConfigError("encoder.resolution", resolution, "must be positive or null", "set encoder.resolution=null")
        if image_shape is None or len(image_shape) != 3:
            raise ConfigError("encoder.image_shape", image_shape, "the pixels encoder needs the images' [C, H, W]",
                              "set dataset.image_shape=[1, 28, 28] (the dataset's own shape)")
        channels, height, width = image_shape
        self.resolution, self.normalize, self.batch_size = resolution, normalize, batch_size
        self.dim = channels * (resolution or height) * (resolution or width)

    def cache_key(self) -> dict:
        return {"name": self.name, "resolution": self.resolution, "normalize": self.normalize,
                "device": "cpu", "dtype": "float32"}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.resolution is not None:
            images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
        features = images.flatten(1).float()
        return unit_norm(features) if self.normalize else features
