"""Statistics of a prototype store, computed apart from the store itself (and from how they are logged)."""

import numpy as np

from neurocl.memory.store import PrototypeStore


class PrototypeAnalyzer:
    def __init__(self, store: PrototypeStore, observed_samples: int | None = None):
        self.store = store
        self.observed = observed_samples if observed_samples is not None else int(store.counts[store.ids].sum())

    def stats(self) -> dict:
        s = self.store
        ids = s.ids
        if not len(ids):
            return {"prototypes": 0, "memory_bytes": s.nbytes}
        counts, labels = s.counts[ids], s.label_counts[ids]
        purity = labels.max(axis=1) / labels.sum(axis=1)
        z = s.conditioned(ids)
        _, sims = s.backend.search(z, 2)
        nearest_other = sims[:, 1] if sims.shape[1] > 1 else np.full(len(ids), np.nan)
        raw_bytes = self.observed * s.dim * 4  # the float32 features the store stands for
        return {
            "prototypes": int(len(ids)),
            "count_mean": float(counts.mean()), "count_max": int(counts.max()),
            "usage_histogram": np.histogram(np.log2(counts), bins=range(0, int(np.log2(counts.max())) + 2))[0].tolist(),
            "purity_mean": float(purity.mean()), "purity_weighted": float((purity * counts).sum() / counts.sum()),
            "intra_similarity": float(1.0 - (s.spread[ids] * counts).sum() / counts.sum()),
            "inter_similarity_nearest": float(np.nanmean(nearest_other)),
            **s.events,
            "memory_bytes": int(s.nbytes), "raw_feature_bytes": int(raw_bytes),
            "memory_ratio": float(s.nbytes / raw_bytes) if raw_bytes else float("nan"),
        }

    def map_2d(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """PCA of the conditioned prototypes to 2-D: (points, majority labels, counts)."""
        s = self.store
        ids = s.ids
        z = s.conditioned(ids)
        z = z - z.mean(axis=0)
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        return z @ vt[:2].T, s.majority(ids), s.counts[ids]
