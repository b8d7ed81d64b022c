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


def prototype_map(points, labels, counts, path, class_names=None, title: str = ""):
    """Prototypes in 2-D, coloured by majority label, area by count."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sizes = 4 + 60 * np.sqrt(counts / max(counts.max(), 1))
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, s=sizes, cmap="tab10", vmin=-0.5, vmax=9.5,
                         alpha=0.6, linewidths=0)
    names = class_names or [str(c) for c in range(int(labels.max()) + 1)]
    handles = [plt.Line2D([], [], marker="o", ls="", color=scatter.cmap(scatter.norm(c)), label=names[c])
               for c in np.unique(labels)]
    ax.legend(handles=handles, fontsize=7, loc="best", title="majority label", title_fontsize=7)
    ax.set_title(title or f"{len(points)} prototypes (PCA of the conditioned space)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def study_summary(rows: list[dict], path, title: str = ""):
    """A_last and forgetting (Chaudhry) per setting, mean ± std over seeds, best A_last on top."""
    rows = sorted(rows, key=lambda r: r["A_last"][0])
    names = [r["setting"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.9 + 0.32 * len(rows)), sharey=True)
    for ax, column, label in ((axes[0], "A_last", "A_last (higher is better)"),
                              (axes[1], "forgetting_chaudhry", "forgetting, Chaudhry (lower is better)")):
        means = [r[column][0] for r in rows]
        stds = [r[column][1] for r in rows]
        ax.barh(range(len(rows)), means, xerr=stds, color="tab:blue" if column == "A_last" else "tab:red", alpha=0.7)
        for i, m in enumerate(means):
            ax.text(m, i, f" {m:.3f}", va="center", fontsize=7)
        ax.set_xlabel(label, fontsize=8)
        ax.set_xlim(0, 1.1)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
