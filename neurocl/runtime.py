"""Device choice and seeding, shared by every component."""

import random

import numpy as np
import torch

from neurocl.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError("device", name, "unknown device", "use device=auto, device=cpu or device=cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", name, "no CUDA GPU is visible", "use device=auto or device=cpu")
    return torch.device(name)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def provenance() -> dict:
    """The code a run ran: neurocl's git commit and whether its tree had uncommitted changes (None outside git)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    try:
        git = lambda *args: subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                           timeout=10, check=True).stdout.strip()
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
