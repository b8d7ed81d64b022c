"""Any timm model as a frozen image/page encoder, its weights read from a local checkpoint file.

The model is built by name with `pretrained=False, num_classes=0` (timm never
downloads anything then) and the user's state dict is loaded strictly, so a
checkpoint of another architecture is an error rather than a half-random
model. Classifier weights in the checkpoint (timm's own releases carry them)
are dropped first: with num_classes=0 the model has no classifier.

    python -m neurocl.run encoder=timm encoder.model_name=vit_small_patch16_224 \
        encoder.checkpoint=/models/vit_small_patch16_224.augreg_in21k_ft_in1k/model.safetensors
"""

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from neurocl.encoders.base import autocast, dtype_name, unit_norm
from neurocl.errors import ConfigError, DataError
from neurocl.runtime import resolve_device


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_state_dict(path: Path) -> dict:
    """A state dict from .safetensors or a torch pickle (weights only: no code runs on load)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"cannot read checkpoint {path}: {e}. Fix: point encoder.checkpoint at a state dict saved "
                        "with torch.save(model.state_dict()) or safetensors.") from e
    # training checkpoints often wrap the weights
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{path} holds no state dict of tensors. Fix: save one with torch.save(model.state_dict()).")
    return state


class TimmEncoder:
    """Pooled pre-logits features of a timm model (`model(x)` with num_classes=0), unit norm.

    Preprocessing follows the model's pretrained_cfg: grey images are copied to
    three channels, the whole image is resized to its input size with its
    interpolation (no centre crop: pages would lose their margins), clamped to
    [0, 1], then standardised with its mean and std.
    """

    accepts = ("image", "page")

    def __init__(self, model_name: str, checkpoint: str | None, name: str | None = None, batch_size: int = 64,
                 normalize: bool = True, model_kwargs: dict | None = None, device: str = "auto"):
        if not checkpoint:
            raise ConfigError("encoder.checkpoint", checkpoint, "needs a local state dict (.pth/.safetensors)",
                              "set encoder.checkpoint=/path/to/model.safetensors; neurocl never downloads weights")
        if batch_size <= 0:
            raise ConfigError("encoder.batch_size", batch_size, "must be positive", "set encoder.batch_size=64")
        import timm

        if not timm.is_model(model_name):
            raise ConfigError("encoder.model_name", model_name, "timm has no such model",
                              "pick a name from timm.list_models(), e.g. vit_small_patch16_224")
        self.checkpoint = Path(checkpoint).expanduser()
        if not self.checkpoint.is_file():
            raise DataError(f"timm checkpoint not found at {self.checkpoint}. Fix: set encoder.checkpoint to a local "
                            f"state dict of {model_name} (.pth or .safetensors).")
        self.model_name, self.batch_size, self.normalize = model_name, batch_size, normalize
        self.model_kwargs = dict(model_kwargs or {})
        self.name = name or f"timm_{model_name}"
        self.device = resolve_device(device)
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **self.model_kwargs)
        self._load(load_state_dict(self.checkpoint))
        self.model.eval().to(self.device)
        cfg = self.model.pretrained_cfg
        self.input_size = tuple(cfg["input_size"][1:])
        self.interpolation = "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear"
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.dim = getattr(self.model, "head_hidden_size", None) or self.model.num_features

    def _load(self, state: dict):
        classifier = self.model.pretrained_cfg.get("classifier") or ()
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            problem = " ".join(str(e).split("\n", 1)[-1].split())[:800]  # one line, the first keys
            raise DataError(f"checkpoint {self.checkpoint} does not fit timm model {self.model_name}: {problem}. "
                            "Fix: set encoder.model_name (and encoder.model_kwargs) to the architecture the "
                            "checkpoint was saved from.") from e

    def cache_key(self) -> dict:
        return {"name": self.name, "model_name": self.model_name, "model_kwargs": self.model_kwargs,
                "checkpoint_sha256": file_sha256(self.checkpoint), "input_size": list(self.input_size),
                "interpolation": self.interpolation, "mean": list(self.mean), "std": list(self.std),
                "preprocess": "grey->rgb,resize(no crop),clamp,standardise", "pooling": "timm pre-logits",
                "normalize": self.normalize, "device": self.device.type, "dtype": dtype_name(self.device)}

    def preprocess(self, images) -> torch.Tensor:
        """(n, C, H, W) in [0, 1], or a list of (C, H, W) of any size -> the model's standardised input."""
        batch = [images] if isinstance(images, torch.Tensor) else [p.unsqueeze(0) for p in images]
        out = []
        for x in batch:
            x = x.to(self.device, torch.float32)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=self.input_size, mode=self.interpolation, align_corners=False, antialias=True)
            out.append(x.clamp(0, 1))  # bicubic overshoots; PIL-based timm transforms clip too
        x = torch.cat(out)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        x = self.preprocess(images)
        with autocast(self.device):
            features = self.model(x).float()
        return unit_norm(features) if self.normalize else features
