"""Synthesised unknowns with a nonlinear boundary: a one-hidden-layer MLP over the seen classes plus one
"mixture" class (mixtures of two seen classes' samples), in the top-256 principal subspace of the seen data;
score = log posterior of the mixture class. Fixed a priori: 256 hidden units, Adam 1e-3, 5 epochs, batch 256."""
import numpy as np, torch
from common import *


def mixout_mlp(X, y, dim=256, lam=(0.3, 0.7), hidden=256, epochs=5, seed=0):
    rng = np.random.default_rng(seed); torch.manual_seed(seed)
    mu = X.mean(0)
    Xc = torch.from_numpy(X - mu).double()
    d = min(dim, X.shape[1])
    evals, V = torch.linalg.eigh(Xc.T @ Xc / len(X))
    B = (V[:, -d:] / evals[-d:].clamp(min=1e-8).sqrt()).float()  # whitened principal subspace
    Z = (torch.from_numpy(X - mu) @ B).numpy()
    n = len(X)
    i = rng.integers(0, n, 4 * n); j = rng.integers(0, n, 4 * n)
    keep = y[i] != y[j]; i, j = i[keep][:n], j[keep][:n]
    l = rng.uniform(*lam, size=(len(i), 1)).astype(np.float32)
    classes = np.unique(y); K = len(classes) + 1
    Zall = torch.from_numpy(np.concatenate([Z, l * Z[i] + (1 - l) * Z[j]]))
    yall = torch.from_numpy(np.concatenate([np.searchsorted(classes, y), np.full(len(i), K - 1)]))
    net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, K))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(Zall))
        for s in range(0, len(perm), 256):
            b = perm[s:s + 256]
            loss = torch.nn.functional.cross_entropy(net(Zall[b]), yall[b])
            opt.zero_grad(); loss.backward(); opt.step()
    net.eval(); mut = torch.from_numpy(mu)
    def f(Xq):
        with torch.no_grad():
            return torch.log_softmax(net((Xq - mut) @ B), 1)[:, -1]
    return Scorer(f, nbytes=(d * X.shape[1] + d * hidden + hidden * K) * 4)
