import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def write_tiny_fmnist(root: Path) -> Path:
    """A tiny Fashion-MNIST in the real idx.gz format: 10 classes, 8 train and 3 test images each."""
    from neurocl.data.idx import write_idx

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for split, per_class in (("train", 8), ("t10k", 3)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 40, (len(labels), 28, 28), dtype=np.uint8)
        for i, c in enumerate(labels):  # a bright class-specific row makes classes separable
            images[i, 2 * c + 3, :] = 255
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def fmnist_dir(tmp_path):
    return write_tiny_fmnist(tmp_path / "fmnist")


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))
