"""Changed copies of an image split: corruptions (test conditions, domains) and rotations (domains).
The images change, the labels and ids do not."""

import math

import torch
import torch.nn.functional as F

from neurocl.data.base import Split
from neurocl.errors import ConfigError

KINDS = ("gaussian_noise", "occlusion", "blur", "contrast")


def corrupt(split: Split, kind: str, severity: float, seed: int = 0) -> Split:
    """gaussian_noise: add N(0, severity^2) to the pixels, clipped to [0, 1].
    occlusion: black out one square of side severity * min(H, W) per image, at a random position.
    blur: a Gaussian blur of standard deviation severity * min(H, W) / 10 pixels.
    contrast: pull each image towards its own mean pixel by `severity` (1: a flat grey image)."""
    if kind not in KINDS:
        raise ConfigError("conditions.<name>.kind", kind, f"must be one of {KINDS}", "use kind=gaussian_noise")
    if not 0 < severity <= 1:
        raise ConfigError("conditions.<name>.severity", severity, "must lie in (0, 1]", "use severity=0.3")
    generator = torch.Generator().manual_seed(seed)
    images = split.images.clone()
    if kind == "blur":
        images = gaussian_blur(images, severity * min(images.shape[-2:]) / 10)
    elif kind == "contrast":
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = mean + (1 - severity) * (images - mean)
    elif kind == "gaussian_noise":
        images = (images + severity * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    else:
        N, _, H, W = images.shape
        side = max(1, round(severity * min(H, W)))
        top = torch.randint(0, H - side + 1, (N,), generator=generator)
        left = torch.randint(0, W - side + 1, (N,), generator=generator)
        rows = (torch.arange(H)[None, :] >= top[:, None]) & (torch.arange(H)[None, :] < top[:, None] + side)
        cols = (torch.arange(W)[None, :] >= left[:, None]) & (torch.arange(W)[None, :] < left[:, None] + side)
        images[(rows[:, :, None] & cols[:, None, :])[:, None].expand_as(images)] = 0.0
    return Split(images, split.labels, split.ids)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, edges padded by reflection."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    N, C, H, W = images.shape
    flat = images.reshape(N * C, 1, H, W)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(N, C, H, W).clamp(0, 1)


def rotate(split: Split, degrees: float) -> Split:
    """Every image turned by `degrees` counter-clockwise about its centre (bilinear; corners filled with 0,
    the background of the digit and clothing images)."""
    images = split.images
    if degrees % 90 == 0:  # exact, with no interpolation
        return Split(torch.rot90(images, round(degrees / 90) % 4, (2, 3)).clone(), split.labels, split.ids)
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # affine_grid maps output to input coordinates: the inverse rotation (y points down in image coordinates)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    turned = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return Split(turned.clamp(0, 1), split.labels, split.ids)


def corrupt_condition(split: Split, name: str, condition) -> Split:
    """`corrupt` from a config entry {kind, severity}, with its unknown or missing keys named."""
    if split.modality != "image" or not isinstance(split.data, torch.Tensor):
        raise ConfigError(f"conditions.{name}", dict(condition), f"pixel corruptions apply to image datasets, "
                          f"this one holds {split.modality} samples", "set conditions=none")
    keys = set(condition)
    if keys != {"kind", "severity"}:
        raise ConfigError(f"conditions.{name}", dict(condition), f"needs exactly the keys kind and severity, "
                          f"got {sorted(keys)}", f"set conditions.{name}={{kind: gaussian_noise, severity: 0.3}}")
    return corrupt(split, condition["kind"], condition["severity"])
