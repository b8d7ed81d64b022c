"""Feature conditioning before similarity: running centring and shrunk within-class whitening.

EfficientNet features are non-negative, which squeezes cosine similarities
together. Conditioning maps a feature x to

    z = normalize((x - mean) @ W)

with W = I (mode "center"), or, in mode "whiten", W = U S^{-1/2}: U spans the
top `projection_dim` (at most dim) principal directions of the total
covariance (all directions when None) and S is the within-class covariance in
that subspace, shrunk towards its mean eigenvalue m:

    S_shrunk = (1 - rho) S + rho m I.

rho is "oas" by default: the Oracle Approximating Shrinkage of Chen et al.
(2010), computed from S and the number of samples behind it, so a stream of a
few hundred samples is shrunk hard and one of 60,000 hardly at all; a number
fixes rho. The statistics are running (exact over everything observed); W
changes only on refresh(), so the prototype index can be rebuilt in step.

The principal subspace is tracked by subspace iteration warm-started from the
previous one (a few products with the covariance instead of a full
eigendecomposition of a 1280 x 1280 matrix, which takes seconds on 2 cores).
"""

import numpy as np
import torch
from scipy.linalg.blas import ssyrk

from neurocl.errors import ConfigError

MODES = ("none", "center", "whiten")
SUBSPACE_ITERATIONS = (8, 2)  # first refresh, later (warm-started) refreshes
SMALL_BATCH, PENDING_ROWS = 128, 1024  # batches below SMALL_BATCH collect PENDING_ROWS scatter rows, then add them


def oas_shrinkage(covariance: torch.Tensor, samples: float) -> float:
    """Chen et al. (2010), eq. 23: the OAS weight rho of the scaled identity, for `samples` samples."""
    p = covariance.shape[0]
    trace, trace_sq = float(torch.trace(covariance)), float((covariance * covariance).sum())
    denominator = (samples + 1 - 2 / p) * (trace_sq - trace**2 / p)
    if denominator <= 0:
        return 1.0
    return float(min(1.0, ((1 - 2 / p) * trace_sq + trace**2) / denominator))


class Conditioner:
    def __init__(self, dim: int, num_classes: int, mode: str = "whiten", shrinkage: float | str = "oas",
                 projection_dim: int | None = None, seed: int = 0):
        if mode not in MODES:
            raise ConfigError("memory.conditioning", mode, f"unknown mode; one of {MODES}", "set memory.conditioning=whiten")
        if shrinkage != "oas" and not (isinstance(shrinkage, (int, float)) and 0 < shrinkage <= 1):
            raise ConfigError("memory.shrinkage", shrinkage, "must be oas or a number in (0, 1]",
                              "set memory.shrinkage=oas")
        if projection_dim is not None and projection_dim < 1:
            raise ConfigError("memory.projection_dim", projection_dim, "must be positive or null",
                              "set memory.projection_dim=256 or null")
        # A projection never widens: features narrower than projection_dim keep their dimension (and need none).
        projection_dim = None if projection_dim is None or projection_dim >= dim else projection_dim
        if projection_dim is not None and mode != "whiten":
            raise ConfigError("memory.projection_dim", projection_dim, f"a projection of the {dim}-d features needs "
                              "conditioning=whiten", "set memory.projection_dim=null or memory.conditioning=whiten")
        self.dim, self.num_classes, self.mode = dim, num_classes, mode
        self.projection_dim = projection_dim
        self.shrinkage, self.out_dim = shrinkage, self.projection_dim or dim
        self.class_counts = np.zeros(num_classes, np.int64)
        self.class_means = np.zeros((num_classes, dim), np.float64)
        # the within-class scatter (not / N), its lower triangle packed row by row: symmetric, half the bytes
        self.within = np.zeros(dim * (dim + 1) // 2, np.float32) if mode == "whiten" else None
        # rows whose outer products are not yet in `within`: small batches (online streams) are added together, as
        # one product and packing cost about as much for 16 rows as for 1,000; larger batches are added at once
        self.pending = np.zeros((0, dim), np.float32)
        self.mean = np.zeros(dim, np.float32)
        self.W = None      # None: identity
        self.rho = None    # the shrinkage of the latest refresh
        self.seed = seed
        self.refreshes = 0

    def update(self, x: np.ndarray, y: np.ndarray):
        """Add a batch to the running class means and within-class scatter (Chan et al. merge, per class)."""
        if self.mode == "none":
            return
        classes, inverse, n_new = np.unique(y, return_inverse=True, return_counts=True)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        batch_means = torch.zeros(len(classes), self.dim).index_add_(0, torch.from_numpy(inverse), xt)
        batch_means = batch_means.double() / torch.from_numpy(n_new)[:, None]
        n_old = self.class_counts[classes]
        delta = batch_means.numpy() - self.class_means[classes]
        if self.within is not None:
            centred = xt - batch_means.float()[torch.from_numpy(inverse)]
            weighted = torch.from_numpy((delta * np.sqrt(n_old * n_new / (n_old + n_new))[:, None]).astype(np.float32))
            self.pending = np.concatenate([self.pending, torch.cat([centred, weighted]).numpy()])
            if len(x) >= SMALL_BATCH or len(self.pending) >= PENDING_ROWS:
                self._add_pending()
        self.class_means[classes] += delta * (n_new / (n_old + n_new))[:, None]
        self.class_counts[classes] = n_old + n_new

    def _add_pending(self):
        lower = ssyrk(1.0, self.pending.T, trans=0, lower=0).T  # BLAS syrk: one triangle, half a matmul's products
        for i in range(self.dim):  # row i of the packed triangle starts at i (i + 1) / 2
            self.within[i * (i + 1) // 2:(i + 1) * (i + 2) // 2] += lower[i, :i + 1]
        self.pending = np.zeros((0, self.dim), np.float32)

    def within_covariance(self) -> torch.Tensor:
        """The pooled within-class covariance; a read (the pending rows are added to a copy)."""
        rows, cols = np.tril_indices(self.dim)
        covariance = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        covariance[rows, cols] = covariance[cols, rows] = torch.from_numpy(self.within).double()
        if len(self.pending):
            pending = torch.from_numpy(self.pending)
            covariance += (pending.T @ pending).double()
        return covariance / max(int(self.class_counts.sum()), 1)

    def subspace(self) -> torch.Tensor | None:
        """An orthonormal basis (dim, projection_dim) of the principal subspace that W projects onto; None
        without a projection. Kept as W alone: W = basis @ (within-class whitening), so the two span it."""
        if self.projection_dim is None or self.W is None:
            return None
        return torch.linalg.qr(torch.from_numpy(self.W).double())[0]

    def _principal_subspace(self, covariance: torch.Tensor) -> torch.Tensor:
        """Top projection_dim eigenvectors by subspace iteration from the previous subspace (Rayleigh-Ritz)."""
        q = self.subspace()
        first = q is None
        if first:
            generator = torch.Generator().manual_seed(self.seed)
            q = torch.randn(self.dim, self.projection_dim, generator=generator, dtype=covariance.dtype)
        else:
            q = q.to(covariance.dtype)
        for _ in range(SUBSPACE_ITERATIONS[0 if first else 1]):
            q, _ = torch.linalg.qr(covariance @ q)
        _, vectors = torch.linalg.eigh(q.T @ covariance @ q)
        return q @ vectors

    def refresh(self):
        """Recompute mean and W from the running statistics."""
        n = self.class_counts.sum()
        if self.mode == "none" or n == 0:
            return
        seen = self.class_counts > 0
        self.mean = (self.class_counts[seen] @ self.class_means[seen] / n).astype(np.float32)
        if self.mode == "whiten":
            within = self.within_covariance().float()
            basis = None
            if self.projection_dim is not None:
                centred_means = torch.from_numpy(self.class_means[seen] - self.mean).float()
                weights = torch.from_numpy(self.class_counts[seen] / n).float()
                basis = self._principal_subspace(within + (centred_means.T * weights) @ centred_means)
                within = basis.T @ within @ basis
            within = within.double()
            self.rho = (oas_shrinkage(within, float(n - seen.sum())) if self.shrinkage == "oas"
                        else float(self.shrinkage))
            values, vectors = torch.linalg.eigh(within)
            values = (1 - self.rho) * values.clamp(min=0) + self.rho * values.clamp(min=0).mean() + 1e-12
            W = (vectors * values.rsqrt()) @ vectors.T
            self.W = (W.float() if basis is None else basis @ W.float()).numpy()
        self.refreshes += 1

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, dim) features (float16, 32 or 64) -> (N, out_dim) float32, unit norm. float16 is widened by
        torch (numpy's astype is 6x slower; the store conditions every prototype it changes)."""
        z = x if x.dtype == np.float32 else torch.from_numpy(np.ascontiguousarray(x)).float().numpy()
        if self.mode != "none":
            z = z - self.mean
        if self.W is not None:
            z = (torch.from_numpy(z) @ torch.from_numpy(self.W)).numpy()
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.maximum(norms, 1e-12)

    @property
    def nbytes(self) -> int:
        arrays = [self.class_counts, self.class_means, self.mean, self.pending] + [a for a in (self.within, self.W)
                                                                                    if a is not None]
        return sum(a.nbytes for a in arrays)

    STATE = ("class_counts", "class_means", "within", "pending", "mean", "W", "rho", "refreshes")

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict):
        for k, v in state.items():
            if k in self.STATE:  # older checkpoints also kept the principal basis, now read from W
                setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)
        if self.within is not None and self.within.ndim == 2:  # older checkpoints: the full matrix
            self.within = np.ascontiguousarray(self.within[np.tril_indices(self.dim)], np.float32)
