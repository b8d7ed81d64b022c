"""Synthesised unknowns (PROSER-style, Zhou et al. CVPR 2021): mixtures of two seen classes' training samples
stand in for classes never seen; a shrunk LDA over the seen classes plus one "mixture" class scores the
posterior of that class. Only seen training data is used."""
import numpy as np, torch
from common import *
from gauss import oas


def mixout(X, y, dim=256, lam=(0.3, 0.7), n_out=None, seed=0, rho='oas'):
    rng = np.random.default_rng(seed)
    mu = X.mean(0)
    Xc = torch.from_numpy(X - mu).double()
    d = min(dim, X.shape[1])
    _, V = torch.linalg.eigh(Xc.T @ Xc)
    B = V[:, -d:].float()
    Z = (torch.from_numpy(X - mu) @ B).numpy()
    n = n_out or len(X)
    i = rng.integers(0, len(X), 4 * n); j = rng.integers(0, len(X), 4 * n)
    keep = y[i] != y[j]
    i, j = i[keep][:n], j[keep][:n]
    l = rng.uniform(*lam, size=(len(i), 1)).astype(np.float32)
    Zo = l * Z[i] + (1 - l) * Z[j]
    classes = np.unique(y)
    Zall = np.concatenate([Z, Zo]); yall = np.concatenate([np.searchsorted(classes, y), np.full(len(Zo), len(classes))])
    K = len(classes) + 1
    means = np.stack([Zall[yall == k].mean(0) for k in range(K)])
    R = torch.from_numpy(Zall - means[yall]).double()
    S = R.T @ R / len(Zall)
    r = oas(S * len(Zall), len(Zall)) if rho == 'oas' else rho
    S = (1 - r) * S + r * torch.trace(S) / d * torch.eye(d, dtype=torch.float64)
    P = torch.linalg.inv(S).float()
    M = torch.from_numpy(means).float()
    W = M @ P; b = -0.5 * (W * M).sum(1) + torch.log(torch.from_numpy(np.bincount(yall, minlength=K) / len(yall))).float()
    Bt, mut = B, torch.from_numpy(mu)
    def f(Xq):
        z = (Xq - mut) @ Bt
        logits = z @ W.T + b
        return torch.log_softmax(logits, 1)[:, -1]
    return Scorer(f, nbytes=(d * X.shape[1] + K * d + d * d) * 4)
