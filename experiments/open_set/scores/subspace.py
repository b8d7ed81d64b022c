"""Per-class principal subspaces (CLAFIC-style / PPCA): score = min_c of a residual / PPCA distance to class c."""
import numpy as np, torch
from common import *
from gauss import class_stats
_eig = {}
def class_eig(key, S):
    if key not in _eig: _eig[key] = torch.linalg.eigh(S)
    return _eig[key]

def class_subspace(X, y, r=64, mode='resid', center=True):
    """mode 'resid': ||(I - U U')(x - mu_c)||^2 / sigma2_c  (sigma2_c = mean discarded eigenvalue);
    mode 'ppca': sum_j<r (u_j'(x-mu_c))^2/lam_j + resid/sigma2_c  (the PPCA Mahalanobis);
    mode 'resid_raw': unnormalised residual.  center=False: subspace through the origin (cosine-like)."""
    st = class_stats(X, y); Us, Ms, Ls, S2 = [], [], [], []
    for c in sorted(st):
        n, mu, S = st[c]; S = S / max(n - 1, 1)
        if not center: S = S + torch.outer(mu, mu) * n / max(n - 1, 1); mu = torch.zeros_like(mu)
        lam, V = class_eig((c, n, float(mu.sum()), center, float(S.trace())), S)
        lam = lam.clamp(min=0); U = V[:, -r:]; s2 = float(lam[:-r].mean()) + 1e-12
        Us.append(U.float()); Ms.append(mu.float()); Ls.append(lam[-r:].float() + s2 * 1e-3); S2.append(s2)
    def f(x):
        out = []
        for U, m, l, s2 in zip(Us, Ms, Ls, S2):
            xc = x - m; p = xc @ U; res = (xc * xc).sum(1) - (p * p).sum(1)
            if mode == 'resid': out.append(res / s2)
            elif mode == 'resid_raw': out.append(res)
            else: out.append((p * p / l).sum(1) + res / s2)
        return torch.stack(out, 1).min(1).values
    return Scorer(f, sum(U.numel() * 4 for U in Us))
