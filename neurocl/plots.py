"""Plots of results; each writes a PNG atomically."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neurocl.io import atomic_path  # noqa: E402


def accuracy_matrix(R, path, title: str = ""):
    R = np.asarray(R)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * R.shape[1], 0.8 + 0.7 * R.shape[0]))
    image = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    for (t, k), a in np.ndenumerate(R):
        ax.text(k, t, f"{a:.2f}", ha="center", va="center", color="white" if a < 0.6 else "black", fontsize=8)
    ax.set_xlabel("tested on experience k")
    ax.set_ylabel("trained through experience t")
    ax.set_xticks(range(R.shape[1]))
    ax.set_yticks(range(R.shape[0]))
    ax.set_title(title or "accuracy R[t, k]", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
