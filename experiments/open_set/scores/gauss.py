"""Gaussian scores from class statistics: shared (pooled) / per-class covariance, shrinkage, subspace, relative."""
import numpy as np, torch
from common import *

_cache = {}
def class_stats(X, y):
    """per class: (count, mean float64, scatter float64), memoised on the rows' content."""
    out = {}
    for c in np.unique(y):
        Xc = X[y == c]
        key = (int(c), len(Xc), float(Xc[:, :64].sum(dtype=np.float64)), float(Xc[-3:].sum(dtype=np.float64)), Xc.shape[1])
        if key not in _cache:
            t = torch.from_numpy(Xc); mu = t.double().mean(0)
            ct = t - mu.float()
            _cache[key] = (len(Xc), mu, (ct.T @ ct).double())
        out[int(c)] = _cache[key]
    return out

def oas(S, n):
    p = S.shape[0]; tr = float(torch.trace(S)); tr2 = float((S * S).sum())
    den = (n + 1 - 2 / p) * (tr2 - tr ** 2 / p)
    return 1.0 if den <= 0 else float(min(1.0, ((1 - 2 / p) * tr2 + tr ** 2) / den))

def shrink_eig(S, n, rho):
    r = oas(S, n) if rho == 'oas' else (oas(S, n) * float(rho[1:]) if isinstance(rho, str) and rho.startswith('x') else float(rho))
    r = min(r, 1.0)
    lam, V = torch.linalg.eigh(S)
    lam = (1 - r) * lam.clamp(min=0) + r * lam.clamp(min=0).mean() + 1e-12
    return lam, V, r

def power(X, p):
    if p == 1: return X
    Z = np.sign(X) * np.abs(X) ** p
    return (Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)).astype(np.float32)

def shared_maha(X, y, rho='oas', dim=None, relative=False, resid=0.0):
    """min_c (x-mu_c)' P (x-mu_c), P = inverse of the shrunk pooled within-class covariance.
    dim: restrict to the top-`dim` principal directions of the seen data's total covariance (whitened PCA subspace).
    relative: subtract the Mahalanobis distance to a background Gaussian of all seen data (Ren et al. 2021).
    resid: add resid * ||residual outside the subspace||^2 / mean residual var (ViM-like)."""
    st = class_stats(X, y); cls = sorted(st)
    n = sum(st[c][0] for c in cls); d = X.shape[1]
    mus = torch.stack([st[c][1] for c in cls]); S = sum(st[c][2] for c in cls) / n
    mean = sum(st[c][0] * st[c][1] for c in cls) / n
    B = None
    if dim is not None and dim < d:
        Tot = S + ((mus - mean).T * torch.tensor([st[c][0] / n for c in cls], dtype=torch.float64)) @ (mus - mean)
        _, U = torch.linalg.eigh(Tot); B = U[:, -dim:]
        S = B.T @ S @ B
    lam, V, r = shrink_eig(S, n - len(cls), rho)
    W = (V * lam.rsqrt()) if B is None else B @ (V * lam.rsqrt())
    W = W.float(); M = (mus.float() @ W); mu0 = mean.float()
    nb = W.numel() * 4 + M.numel() * 4
    if relative:
        Tot = S + (((mus - mean) @ (B if B is not None else torch.eye(d, dtype=torch.float64))).T * torch.tensor([st[c][0] / n for c in cls], dtype=torch.float64)) @ ((mus - mean) @ (B if B is not None else torch.eye(d, dtype=torch.float64)))
        l0, V0, _ = shrink_eig(Tot, n - 1, rho)
        W0 = ((V0 * l0.rsqrt()) if B is None else B @ (V0 * l0.rsqrt())).float(); m0 = mean.float() @ W0
        nb += W0.numel() * 4
    if resid:
        Bf = B.float(); rv = float((torch.trace(sum(st[c][2] for c in cls) / n) - torch.trace(S)) / max(d - dim, 1))
    def f(x):
        z = x @ W
        dist = ((z[:, None, :] - M[None]) ** 2).sum(-1).min(1).values if len(M) <= 16 else torch.cdist(z, M).pow(2).min(1).values
        if relative:
            dist = dist - ((x @ W0 - m0) ** 2).sum(1)
        if resid:
            xc = x - mu0; dist = dist + resid * ((xc ** 2).sum(1) - ((xc @ Bf) ** 2).sum(1)) / rv
        return dist
    return Scorer(f, nb, rho=r)

def class_maha(X, y, rho='oas', mode='maha', dim=None, corr=False):
    """per-class covariance: min_c of (x-mu_c)' P_c (x-mu_c)   (mode 'maha', FeCAM), or of that + log det Sigma_c (mode 'nll', QDA).
    dim: compute in the top-`dim` PCA subspace of the seen data (cost). corr: FeCAM's correlation normalisation of Sigma_c."""
    st = class_stats(X, y); cls = sorted(st); n = sum(st[c][0] for c in cls); d = X.shape[1]
    mean = sum(st[c][0] * st[c][1] for c in cls) / n
    B = None
    if dim is not None and dim < d:
        mus = torch.stack([st[c][1] for c in cls]); S = sum(st[c][2] for c in cls) / n
        Tot = S + ((mus - mean).T * torch.tensor([st[c][0] / n for c in cls], dtype=torch.float64)) @ (mus - mean)
        _, U = torch.linalg.eigh(Tot); B = U[:, -dim:]
    Ws, Ms, Ls = [], [], []
    for c in cls:
        nc, mu, Sc = st[c]; Sc = Sc / max(nc - 1, 1)
        if B is not None: Sc = B.T @ Sc @ B; mu = mu @ B
        if corr:
            s = Sc.diagonal().clamp(min=1e-12).sqrt(); Sc = Sc / (s[:, None] * s[None])
        lam, V, r = shrink_eig(Sc, nc, rho)
        W = V * lam.rsqrt()
        Ws.append(W.float()); Ms.append((mu @ W).float()); Ls.append(float(torch.log(lam).sum()))
    Bf = None if B is None else B.float()
    L = torch.tensor(Ls, dtype=torch.float32); L = L - L.min()
    def f(x):
        if Bf is not None: x = x @ Bf
        D = torch.stack([((x @ W - m) ** 2).sum(1) for W, m in zip(Ws, Ms)], 1)
        if mode == 'nll': D = D + L
        return D.min(1).values
    return Scorer(f, sum(w.numel() * 4 for w in Ws))
