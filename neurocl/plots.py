"""Plots of results; each writes a PNG atomically."""

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neurocl.io import atomic_path  # noqa: E402


def _draw_accuracy_matrix(ax, R, title: str):
    """R[t, k] with its numbers; cells of experiences not yet trained (k > t) are left blank when they are all
    zero (class-incremental: an untrained memory abstains), and shown when they carry forward transfer."""
    R = np.asarray(R, dtype=float)
    unseen = np.triu(np.ones_like(R, dtype=bool), 1)
    masked = unseen & (not np.any(R[unseen]))
    image = ax.imshow(np.ma.masked_array(R, masked), vmin=0, vmax=1, cmap="viridis")
    for (t, k), a in np.ndenumerate(R):
        if not masked[t, k]:
            ax.text(k, t, f"{a:.2f}", ha="center", va="center", color="white" if a < 0.6 else "black", fontsize=8)
    ax.set_xlabel("tested on experience k")
    ax.set_ylabel("trained through experience t")
    ax.set_xticks(range(R.shape[1]))
    ax.set_yticks(range(R.shape[0]))
    ax.set_title(title, fontsize=9)
    return image


def accuracy_matrix(R, path, title: str = ""):
    R = np.asarray(R)
    fig, ax = plt.subplots(figsize=(1.6 + 0.8 * R.shape[1], 0.8 + 0.7 * R.shape[0]))
    image = _draw_accuracy_matrix(ax, R, title or "accuracy R[t, k]")
    fig.colorbar(image, ax=ax, fraction=0.046, label="accuracy")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def accuracy_matrices(matrices: dict, path, title: str = ""):
    """R matrices side by side, one per setting (mean over seeds), on one colour scale."""
    T = max(np.asarray(R).shape[1] for R in matrices.values())
    columns = min(len(matrices), 4)
    rows = -(-len(matrices) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(0.8 + columns * (0.9 + 0.62 * T), rows * (1.3 + 0.6 * T)),
                             squeeze=False, layout="constrained")
    image = None
    for ax, (setting, R) in zip(axes.flat, matrices.items()):
        image = _draw_accuracy_matrix(ax, R, textwrap.fill(setting, 28))
    for ax in list(axes.flat)[len(matrices):]:
        ax.axis("off")
    fig.suptitle(title or "accuracy R[t, k], mean over seeds", fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.03, label="accuracy")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
    ax.set_title(title or f"{len(points)} prototypes (PCA of the conditioned space; area: samples absorbed)",
                 fontsize=9)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


SUMMARY_PANELS = (("A_last", "A_last (higher is better)"),
                  ("forgetting_chaudhry", "forgetting, Chaudhry (lower is better)"))
OPEN_SET_PANELS = (("open_set_auroc", "open-set AUROC, seen vs not yet seen (higher is better)"),
                   ("open_set_abstained_at_95", "unseen abstained at 95% seen answered (higher is better)"))


def study_summary(rows: list[dict], path, title: str = "", panels=SUMMARY_PANELS):
    """Two columns per setting (A_last and forgetting by default), mean ± std over seeds, in the order of `rows`
    (the tables' order: best A_last first) from the top."""
    rows = rows[::-1]  # barh draws the first row at the bottom
    names = [textwrap.fill(r["setting"].replace("memory.", ""), 55) for r in rows]  # long override lists wrap
    lines = max(name.count("\n") + 1 for name in names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.9 + 0.2 * (lines + 0.6) * len(rows)), sharey=True)
    for (ax, (column, label)), color in zip(zip(axes, panels), ("tab:blue", "tab:red")):
        means = [r[column][0] for r in rows]
        stds = [r[column][1] for r in rows]
        ax.barh(range(len(rows)), means, xerr=stds, color=color, alpha=0.7)
        for i, m in enumerate(means):
            ax.text(m, i, f" {m:.3f}", va="center", fontsize=7)
        ax.set_xlabel(label, fontsize=8)
        top = max((m + s for m, s in zip(means, stds) if np.isfinite(m + s)), default=1.0)
        ax.set_xlim(0, 1.1 if column.startswith(("A_", "open_set")) else max(1.25 * top, 0.01))
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def spike_raster(record, slots, concept_labels, true_labels, path, class_names=None, dt_ms: float = 1.0):
    """Per query: candidate concept neurons (coloured by their prototype's label) above the label neurons."""
    concept = record.concept_spikes.detach().numpy()  # (T, B, K)
    label = record.label_spikes.detach().numpy()      # (T, B, C)
    T, B, K = concept.shape
    C = label.shape[2]
    names = class_names or [str(c) for c in range(C)]
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, B, figsize=(3.2 * B, 4.2), squeeze=False)
    counts = label.sum(axis=0)
    for b, ax in enumerate(axes[0]):
        for k in range(K):
            t = np.flatnonzero(concept[:, b, k])
            ax.scatter(t * dt_ms, np.full(len(t), C + 1 + k), s=8, marker="|",
                       color=cmap(int(concept_labels[b, k]) % 10))
        for c in range(C):
            t = np.flatnonzero(label[:, b, c])
            ax.scatter(t * dt_ms, np.full(len(t), c), s=10, marker="|", color=cmap(c % 10))
        ax.axhline(C + 0.5, color="grey", lw=0.5)
        ax.set_yticks(list(range(C)) + [C + 1 + K // 2])
        ax.set_yticklabels([names[c][:10] for c in range(C)] + [f"top-{K} concepts"], fontsize=6)
        ax.set_xlim(-0.5 * dt_ms, T * dt_ms)
        ax.set_xlabel("time (ms)", fontsize=8)
        if b == 0:
            ax.set_ylabel("neuron (label neurons below the line, candidate concepts above)", fontsize=7)
            ax.legend(handles=[plt.Line2D([], [], marker="|", ls="", color=cmap(c % 10), label=names[c][:10])
                               for c in range(C)], fontsize=5, title="colour: label", title_fontsize=5,
                      loc="upper right")
        answer = int(counts[b].argmax()) if counts[b].any() else None
        ax.set_title(f"true: {names[int(true_labels[b])][:12]}\nspiking answer: "
                     f"{names[answer][:12] if answer is not None else 'silent'}", fontsize=8)
    fig.suptitle("spike raster: concept neurons (colour: prototype label) and label neurons", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def search_raster(record, slots, similarity, concept_labels, true_labels, path, class_names=None, dt_ms: float = 1.0):
    """Per query: each simulated search neuron's spike time against its similarity (B, M), coloured by its
    prototype's label (filled: a winner, hollow: fired too late, grey cross: silent), the k-gate and the answer."""
    first = record.first_spike.numpy()
    B = first.shape[0]
    names = class_names or [str(c) for c in range(int(concept_labels.max()) + 1)]
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, B, figsize=(3.2 * B, 3.8), squeeze=False)
    answers = record.label_potential.argmax(dim=1)
    for b, ax in enumerate(axes[0]):
        for m in np.flatnonzero((slots[b] >= 0).numpy()):
            colour, sim = cmap(int(concept_labels[b, m]) % 10), float(similarity[b, m])
            if first[b, m] < 0:
                ax.scatter(sim, float(record.answer_step[b]) * dt_ms, s=6, color="lightgrey", marker="x")
            else:
                ax.scatter(sim, first[b, m] * dt_ms, s=14, edgecolors=colour,
                           facecolors=colour if record.winners[b, m] else "none")
        for step, style, name in ((record.gate_step[b], "--", "k-gate"), (record.answer_step[b], "-", "answer")):
            if step >= 0:
                ax.axhline(float(step) * dt_ms, color="grey", ls=style, lw=0.8, label=name)
        ax.set_xlabel("similarity to the query", fontsize=8)
        ax.set_ylabel("first spike (ms)", fontsize=8)
        ax.legend(fontsize=6)
        answer = names[int(answers[b])][:12] if not record.silent[b] else "silent"
        ax.set_title(f"true: {names[int(true_labels[b])][:12]}\nspiking answer: {answer}", fontsize=8)
    fig.suptitle("search layer: the nearest prototypes fire first, the first k win", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def kernel_raster(fire_step, similarity, contribution, true_labels, answers, path, class_names=None,
                  dt_ms: float = 1.0):
    """Kernel ridge's search layer, per query: every neuron's spike time against its similarity (B, N), coloured by
    what its spike leaves on the answered label's membrane (contribution (B, N): red positive, blue negative); the
    least similar fire first, and the leaky label integrators weigh the last ones most."""
    B = fire_step.shape[0]
    names = class_names or [str(c) for c in range(int(max(true_labels.max(), answers.max())) + 1)]
    fig, axes = plt.subplots(1, B, figsize=(3.2 * B, 3.8), squeeze=False)
    for b, ax in enumerate(axes[0]):
        fired = (fire_step[b] >= 0).numpy()
        weight = contribution[b].numpy()[fired]
        limit = max(float(np.abs(weight).max()), 1e-12) if len(weight) else 1.0
        ax.scatter(similarity[b].numpy()[fired], fire_step[b].numpy()[fired] * dt_ms, s=3, c=weight, cmap="coolwarm",
                   vmin=-limit, vmax=limit)
        ax.set_xlabel("similarity to the query", fontsize=8)
        ax.set_ylabel("spike (ms)", fontsize=8)
        ax.set_title(f"true: {names[int(true_labels[b])][:12]}\nspiking answer: {names[int(answers[b])][:12]}",
                     fontsize=8)
    fig.suptitle("kernel search layer: every prototype fires once, the nearest last; colour: what its spike adds "
                 "to the answer", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def readout_comparison(rows: list[dict], conditions: list[str], other: str, path, title: str = ""):
    """Each setting's own readout against `other` (e.g. the store's vote) on the same prototypes, per condition.
    Points above the diagonal: the memory's own answer is the better one."""
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for i, condition in enumerate(conditions):
        pairs = [(r[f"{condition} {other}"][0], r[condition][0]) for r in rows
                 if not np.isnan(r[f"{condition} {other}"][0]) and not np.isnan(r[condition][0])]
        if pairs:
            x, y = zip(*pairs)
            ax.scatter(x, y, s=18, alpha=0.75, color=plt.get_cmap("tab10")(i), label=condition)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"accuracy, {other} (same prototypes)", fontsize=8)
    ax.set_ylabel("accuracy, the memory's own readout", fontsize=8)
    ax.legend(fontsize=7, title="test condition", title_fontsize=7)
    ax.set_title(title or f"own readout against {other}, one point per setting", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def curves_over_experiences(curves: dict, path, ylabel: str, title: str = ""):
    """One line per setting: mean over seeds of a per-experience quantity (e.g. accuracy on experiences seen so far),
    with its spread over seeds as a band."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))  # two side by side on a 1,400 px page
    for setting, values in curves.items():
        values = np.asarray(values, dtype=float)  # (seeds, T)
        x = np.arange(values.shape[1])
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        ax.plot(x, mean, marker="o", ms=3, label=textwrap.shorten(setting, 60))
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("after experience t")
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(max(len(np.atleast_2d(v)[0]) for v in curves.values())))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def anytime_curves(curves: dict, path, task_ends=(), title: str = ""):
    """Anytime accuracy against stream samples: one line per setting (the mean over its runs, which share one
    evaluation schedule, with their spread as a band); dotted lines mark the task ends (the memory is not told)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for setting, runs in curves.items():
        samples = np.asarray(runs[0][0])
        values = np.asarray([accuracy for _, accuracy in runs], dtype=float)  # (runs, points)
        mean, std = values.mean(axis=0), values.std(axis=0)
        ax.plot(samples, mean, lw=1.2, label=textwrap.shorten(setting, 60))
        if len(runs) > 1:
            ax.fill_between(samples, mean - std, mean + std, alpha=0.15)
    for end in task_ends:
        ax.axvline(end, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("stream samples observed (dotted: task ends, not told to the memory)")
    ax.set_ylabel("anytime accuracy on the classes seen")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def risk_coverage(curves: dict, path, title: str = ""):
    """Risk (error rate of the answers given) against coverage, answering the most confident queries first;
    one line per test condition. The area under each line is its AURC."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (coverage, risk) in curves.items():
        ax.plot(coverage, risk, label=f"{name} (AURC {np.mean(risk):.2g})")  # 2 significant digits: often < 0.001
    ax.set_xlabel("coverage (share of queries answered)")
    ax.set_ylabel("risk (error rate of the answers)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title(title or "risk-coverage", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def confusion_matrix(matrix, class_names, path, title: str = ""):
    """Rows: true class; columns: answer, the last one abstentions; each row normalised to its queries."""
    matrix = np.asarray(matrix, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.5 + 0.45 * matrix.shape[1]
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    names = [textwrap.shorten(str(n), 14) for n in class_names]
    ax.set_xticks(range(matrix.shape[1]), names + ["abstained"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(matrix.shape[0]), names, fontsize=7)
    if matrix.shape[1] <= 16:
        for (t, a), count in np.ndenumerate(matrix):
            if count:
                ax.text(a, t, f"{int(count)}", ha="center", va="center", fontsize=6,
                        color="white" if shares[t, a] > 0.5 else "black")
    ax.set_xlabel("answer")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (numbers: counts; colour: share of the class's queries)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class's queries")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
