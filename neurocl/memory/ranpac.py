"""RanPAC-style random-projection ridge (McDonnell et al., NeurIPS 2023), on frozen features.

A fixed random matrix W (d x M, Gaussian) and a ReLU lift each feature to
h = relu(x W). The memory accumulates the Gram matrix G = sum h h^T and
C = sum h y^T (one-hot y), so it never forgets by construction, and answers
with the ridge solution

    scores(x) = h(x) (G + lambda I)^-1 C.

lambda is chosen per experience as in RanPAC: a fifth of the experience's
samples is held out, each lambda of the grid is fitted on everything else
seen so far and scored on the held-out fifth, and the best one is refitted
on all the data (in end_experience, which the driver calls after each
experience's last batch; predict and state_dict only read).
"""

import torch

from neurocl.errors import ConfigError
from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores, warn_held_back


class RanPAC(MemoryBase):
    def __init__(self, dim: int, num_classes: int, projection_dim: int = 5000,
                 ridge_grid: list[float] | None = None, holdout_fraction: float = 0.2, seed: int = 0):
        if not isinstance(projection_dim, int) or projection_dim < 1:
            raise ConfigError("memory.projection_dim", projection_dim, "must be a positive integer",
                              "set memory.projection_dim=5000")
        if not 0 < holdout_fraction < 1:
            raise ConfigError("memory.holdout_fraction", holdout_fraction, "must be in (0, 1)",
                              "set memory.holdout_fraction=0.2")
        self.ridge_grid = [float(r) for r in (ridge_grid or [10.0 ** e for e in range(-8, 9)])]
        if not self.ridge_grid or min(self.ridge_grid) <= 0:
            raise ConfigError("memory.ridge_grid", ridge_grid, "must list positive values",
                              "leave it null for 1e-8 ... 1e8")
        self.dim, self.num_classes, self.projection_dim = dim, num_classes, projection_dim
        self.holdout_fraction = holdout_fraction
        self.generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(dim, projection_dim, generator=self.generator)
        self.gram = torch.zeros(projection_dim, projection_dim, dtype=torch.float64)
        self.targets = torch.zeros(projection_dim, num_classes, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.long)
        self.held_out = []       # (features, labels) of the current experience, not yet in gram
        self.ridge = None        # the lambda chosen for the latest experience
        self.readout = None      # (M, C) float32, a cache: rebuilt from gram, targets and ridge after new data

    def lift(self, features: torch.Tensor) -> torch.Tensor:
        return torch.relu(features.float() @ self.projection)

    def _add(self, h: torch.Tensor, labels: torch.Tensor):
        self.gram += (h.T @ h).double()  # float32 product, float64 sum
        self.targets.index_add_(1, labels, h.T.double())

    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        hold = torch.rand(len(labels), generator=self.generator) < self.holdout_fraction
        self.held_out.append((features[hold].float(), labels[hold]))
        self._add(self.lift(features[~hold]), labels[~hold])
        self.counts += torch.bincount(labels, minlength=self.num_classes)
        self.readout = None

    def _solve(self, ridge: float) -> torch.Tensor:
        eye = torch.eye(self.projection_dim, dtype=torch.float64)
        return torch.linalg.solve(self.gram + ridge * eye, self.targets).float()

    def _choose_ridge(self) -> float:
        y = torch.cat([l for _, l in self.held_out]) if self.held_out else torch.empty(0, dtype=torch.long)
        if not len(y):
            return self._ridge()
        x = torch.cat([f for f, _ in self.held_out])
        # One eigendecomposition serves the whole grid: (G + l I)^-1 = V diag(1 / (e + l)) V^T.
        eigenvalues, vectors = torch.linalg.eigh(self.gram)
        h_v = (self.lift(x).double() @ vectors)
        v_c = vectors.T @ self.targets
        seen = self.counts > 0
        accuracies = []
        for ridge in self.ridge_grid:
            scores = (h_v / (eigenvalues + ridge)) @ v_c
            accuracies.append((scores[:, seen].argmax(1) == (seen.cumsum(0) - 1)[y]).double().mean().item())
        return self.ridge_grid[max(range(len(accuracies)), key=accuracies.__getitem__)]

    def end_experience(self):
        """Choose lambda on the experience's held-out fifth, then fold the fifth in and solve the readout."""
        self.ridge = self._choose_ridge()
        for features, labels in self.held_out:
            self._add(self.lift(features), labels)
        self.held_out = []
        self.readout = self._solve(self.ridge)

    def _ridge(self) -> float:
        """The lambda answers use: the latest experience's choice (the grid's middle before the first)."""
        return self.ridge if self.ridge is not None else self.ridge_grid[len(self.ridge_grid) // 2]

    def predict(self, features) -> Prediction:
        """From gram and targets as they are: a held-out fifth joins them at end_experience."""
        check_batch(features, self.dim)
        warn_held_back(self, sum(len(l) for _, l in self.held_out))
        if self.readout is None:
            self.readout = self._solve(self._ridge())
        scores = self.lift(features) @ self.readout
        scores[:, self.counts == 0] = float("-inf")
        return prediction_from_scores(scores)

    def state_dict(self) -> dict:
        return {"projection": self.projection.clone(), "gram": self.gram.clone(), "targets": self.targets.clone(),
                "counts": self.counts.clone(), "ridge": self.ridge, "generator": self.generator.get_state(),
                "held_out": [(f.clone(), l.clone()) for f, l in self.held_out]}

    def load_state_dict(self, state: dict):
        self.projection, self.gram = state["projection"].clone(), state["gram"].clone()
        self.targets, self.counts, self.ridge = state["targets"].clone(), state["counts"].clone(), state["ridge"]
        self.generator.set_state(state["generator"])
        self.held_out = [(f.clone(), l.clone()) for f, l in state.get("held_out", [])]  # older checkpoints: none
        self.readout = None

    def stats(self) -> dict:
        tensors = (self.projection, self.gram, self.targets)
        return {"classes_seen": int((self.counts > 0).sum()), "ridge": self.ridge,
                "memory_bytes": sum(t.nelement() * t.element_size() for t in tensors)}
