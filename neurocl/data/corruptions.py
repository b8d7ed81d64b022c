"""Corrupted copies of a test split, for robustness conditions: the images change, the labels do not."""

import torch

from neurocl.data.base import Split
from neurocl.errors import ConfigError

KINDS = ("gaussian_noise", "occlusion")


def corrupt(split: Split, kind: str, severity: float, seed: int = 0) -> Split:
    """gaussian_noise: add N(0, severity^2) to the pixels, clipped to [0, 1].
    occlusion: black out one square of side severity * min(H, W) per image, at a random position."""
    if kind not in KINDS:
        raise ConfigError("conditions.<name>.kind", kind, f"must be one of {KINDS}", "use kind=gaussian_noise")
    if not 0 < severity <= 1:
        raise ConfigError("conditions.<name>.severity", severity, "must lie in (0, 1]", "use severity=0.3")
    generator = torch.Generator().manual_seed(seed)
    images = split.images.clone()
    if kind == "gaussian_noise":
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
