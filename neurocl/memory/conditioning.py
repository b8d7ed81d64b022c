"""Feature conditioning before similarity: running centring and shrunk within-class whitening.

EfficientNet features are non-negative, which squeezes cosine similarities
together. Conditioning maps a feature x to

    z = normalize((x - mean) @ W)

with W = I (mode "center"), or, in mode "whiten", W = U S^{-1/2}: U spans the
top `projection_dim` (at most dim) principal directions of the total covariance (all
directions when None) and S is the within-class covariance in that subspace,
shrunk towards its mean eigenvalue: S + shrinkage * mean_eig * I. The
statistics are running (exact over everything observed); W changes only on
refresh(), so the prototype index can be rebuilt in step with it.
"""

import numpy as np
import torch

from neurocl.errors import ConfigError

MODES = ("none", "center", "whiten")


class Conditioner:
    def __init__(self, dim: int, num_classes: int, mode: str = "whiten", shrinkage: float = 1e-2,
                 projection_dim: int | None = None):
        if mode not in MODES:
            raise ConfigError("memory.conditioning", mode, f"unknown mode; one of {MODES}", "set memory.conditioning=whiten")
        if shrinkage <= 0:
            raise ConfigError("memory.shrinkage", shrinkage, "must be positive", "set memory.shrinkage=0.01")
        if projection_dim is not None and projection_dim < 1:
            raise ConfigError("memory.projection_dim", projection_dim, "must be positive or null",
                              "set memory.projection_dim=256 or null")
        if projection_dim is not None and mode != "whiten":
            raise ConfigError("memory.projection_dim", projection_dim, "a projection needs conditioning=whiten",
                              "set memory.projection_dim=null or memory.conditioning=whiten")
        self.dim, self.num_classes, self.mode = dim, num_classes, mode
        # A projection never widens: features narrower than projection_dim keep their dimension.
        self.projection_dim = None if projection_dim is None or projection_dim >= dim else projection_dim
        self.shrinkage, self.out_dim = shrinkage, self.projection_dim or dim
        self.class_counts = np.zeros(num_classes, np.int64)
        self.class_means = np.zeros((num_classes, dim), np.float64)
        self.within = np.zeros((dim, dim), np.float32) if mode == "whiten" else None  # scatter, not yet / N
        self.mean = np.zeros(dim, np.float32)
        self.W = None  # None: identity
        self.refreshes = 0

    def update(self, x: np.ndarray, y: np.ndarray):
        """Add a batch to the running class means and within-class scatter (Chan et al. merge, per class)."""
        if self.mode == "none":
            return
        for c in np.unique(y):
            xc = x[y == c].astype(np.float64)
            n_old, n_new = self.class_counts[c], len(xc)
            mean_new = xc.mean(axis=0)
            if self.within is not None:
                centred = torch.from_numpy((xc - mean_new).astype(np.float32))
                delta = (mean_new - self.class_means[c]).astype(np.float32)
                self.within += (centred.T @ centred).numpy()
                self.within += (n_old * n_new / (n_old + n_new)) * np.outer(delta, delta)
            self.class_means[c] += (mean_new - self.class_means[c]) * n_new / (n_old + n_new)
            self.class_counts[c] = n_old + n_new

    def refresh(self):
        """Recompute mean and W from the running statistics."""
        n = self.class_counts.sum()
        if self.mode == "none" or n == 0:
            return
        seen = self.class_counts > 0
        self.mean = (self.class_counts[seen] @ self.class_means[seen] / n).astype(np.float32)
        if self.mode == "whiten":
            within = torch.from_numpy(self.within).double() / n
            basis = None
            if self.projection_dim is not None:
                centred_means = torch.from_numpy(self.class_means[seen] - self.mean)
                between = (centred_means.T * torch.from_numpy(self.class_counts[seen] / n)) @ centred_means
                _, vectors = torch.linalg.eigh(within + between)
                basis = vectors[:, -self.projection_dim:]
                within = basis.T @ within @ basis
            values, vectors = torch.linalg.eigh(within)
            values = values.clamp(min=0) + self.shrinkage * values.clamp(min=0).mean() + 1e-12
            W = (vectors * values.rsqrt()) @ vectors.T
            self.W = (W if basis is None else basis @ W).float().numpy()
        self.refreshes += 1

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float32) - self.mean if self.mode != "none" else x.astype(np.float32)
        if self.W is not None:
            z = (torch.from_numpy(z) @ torch.from_numpy(self.W)).numpy()
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.maximum(norms, 1e-12)

    @property
    def nbytes(self) -> int:
        arrays = [self.class_counts, self.class_means, self.mean] + [a for a in (self.within, self.W) if a is not None]
        return sum(a.nbytes for a in arrays)

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("class_counts", "class_means", "within", "mean", "W", "refreshes")}

    def load_state_dict(self, state: dict):
        for k, v in state.items():
            setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)
