"""How unlike everything learned a query is: the prototype memory's open-set ("unknown") score.

Two parts, each from statistics the store already keeps (experiments/open_set/scores measured the choice):
- distance: the Mahalanobis distance to the nearest known class mean, under the pooled within-class covariance
  shrunk as the whitening shrinks it;
- mixtures: classes never seen are often mixtures of seen ones (a shirt between a T-shirt and a pullover), so
  mixtures lam * a + (1 - lam) * b of prototypes a, b of different classes (lam uniform in [0.3, 0.7], drawn by
  the prototypes' counts) stand in for them (PROSER, Zhou et al. 2021); a shrunk LDA over the known classes plus
  a "mixture" class, in the conditioner's principal subspace, gives its log posterior.
The score is the sum of the two, each standardised by its mean and standard deviation on the held-out training
samples of the latest experience (readout=auto holds them out, then learns them); without held-out samples
(readout=vote) it is the distance alone.
"""

from typing import NamedTuple

import numpy as np
import torch

from neurocl.memory.conditioning import oas_shrinkage

MIXTURE_WEIGHTS = (0.3, 0.7)


class UnknownScore(NamedTuple):
    means: torch.Tensor            # (C_known, D) known class means
    precision: torch.Tensor        # (D, D) inverse of the shrunk pooled within-class covariance
    centre: torch.Tensor           # (D,) the mean the subspace is centred on
    basis: torch.Tensor            # (D, d) principal subspace of the mixture discriminant
    weights: torch.Tensor          # (C_known + 1, d) discriminant weights, the mixture class last
    biases: torch.Tensor           # (C_known + 1,)
    scale: tuple | None            # (distance mean, sd, mixture mean, sd) on held-out samples; None: distance only

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        xp = x @ self.precision
        d = (xp * x).sum(1, keepdim=True) - 2 * xp @ self.means.T + ((self.means @ self.precision) * self.means).sum(1)
        return d.min(dim=1).values

    def mixture(self, x: torch.Tensor) -> torch.Tensor:
        logits = ((x - self.centre) @ self.basis) @ self.weights.T + self.biases
        return torch.log_softmax(logits, dim=1)[:, -1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale is None:
            return self.distance(x)
        dm, ds, mm, ms = self.scale
        return (self.distance(x) - dm) / ds + (self.mixture(x) - mm) / ms


def fit_unknown(store, generator: np.random.Generator, held_out: torch.Tensor | None = None,
                scale: tuple | None = None) -> UnknownScore | None:
    """From the store's class statistics and prototypes; `held_out` (known classes) fixes the standardisation,
    else `scale` (an earlier fit's) is kept. None when the conditioner keeps no covariance (conditioning!=whiten)."""
    c = store.conditioner
    if c.within is None or not (c.class_counts > 0).any():
        return None
    known = c.class_counts > 0
    covariance = c.within_covariance()
    D = covariance.shape[0]
    rho = c.rho if c.rho is not None else 0.1
    shrunk = (1 - rho) * covariance + (rho * torch.trace(covariance) / D + 1e-12) * torch.eye(D, dtype=covariance.dtype)
    means = torch.from_numpy(c.class_means[known]).float()
    precision = torch.linalg.inv(shrunk).float()

    # the mixture discriminant, in the conditioner's principal subspace (all dimensions without one)
    centre = torch.from_numpy(c.mean).float()
    subspace = c.subspace()
    basis = subspace.float() if subspace is not None else torch.eye(D)
    d = basis.shape[1]
    ids = store.ids
    labels, counts = store.majority(ids), store.counts[ids].astype(np.float64)
    n = float(c.class_counts.sum())
    distance_only = UnknownScore(means, precision, centre, basis, torch.zeros(1, d), torch.zeros(1), None)
    if len(np.unique(labels)) < 2:  # no two classes to mix
        return distance_only
    draws = int(min(n, 20_000))
    first = generator.choice(len(ids), 4 * draws, p=counts / counts.sum())
    second = generator.choice(len(ids), 4 * draws, p=counts / counts.sum())
    keep = labels[first] != labels[second]
    first, second = first[keep][:draws], second[keep][:draws]
    if len(first) < 2:  # one class holds almost every sample: too few mixtures to fit
        return distance_only
    lam = torch.from_numpy(generator.uniform(*MIXTURE_WEIGHTS, size=(len(first), 1))).float()
    projected = (torch.from_numpy(store.means[ids]).float() - centre) @ basis  # mixing commutes with it
    z_mix = lam * projected[first] + (1 - lam) * projected[second]
    class_means = (means - centre) @ basis                      # (C_known, d)
    mix_mean = z_mix.mean(0)
    within = basis.T @ covariance.float() @ basis * n            # scatter of the known classes in the subspace
    scatter = within + (z_mix - mix_mean).T @ (z_mix - mix_mean)
    total = n + len(z_mix)  # the mixtures weigh as much as the samples seen, as in the study
    pooled = (scatter / total).double()
    r = oas_shrinkage(pooled, total)
    pooled = ((1 - r) * pooled + r * torch.trace(pooled) / d * torch.eye(d, dtype=pooled.dtype)).float()
    all_means = torch.cat([class_means, mix_mean[None]])
    priors = torch.from_numpy(np.r_[c.class_counts[known], n]).float() / (2 * n)
    weights = torch.linalg.solve(pooled, all_means.T).T
    biases = -0.5 * (weights * all_means).sum(1) + priors.log()
    score = UnknownScore(means, precision, centre, basis, weights, biases, scale)
    if held_out is not None and len(held_out) > 1:
        x = held_out.float()
        distance, mixture = score.distance(x), score.mixture(x)
        score = score._replace(scale=(float(distance.mean()), float(distance.std()) + 1e-12,
                                      float(mixture.mean()), float(mixture.std()) + 1e-12))
    return score
