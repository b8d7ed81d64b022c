"""Deep kNN (Sun et al. 2022) over samples or k-means prototypes, in several spaces."""
import numpy as np, torch
from common import *
from gauss import class_stats, shrink_eig, power

def whitener(X, y, rho='oas'):
    st = class_stats(X, y); cls = sorted(st); n = sum(st[c][0] for c in cls)
    S = sum(st[c][2] for c in cls) / n; mean = sum(st[c][0] * st[c][1] for c in cls) / n
    lam, V, r = shrink_eig(S, n - len(cls), rho)
    return mean.float(), (V * lam.rsqrt()).float()

def space(X, y, kind):
    """returns transform(x torch)->torch (L2-normalised), size bytes"""
    if kind == 'raw':
        return (lambda x: torch.nn.functional.normalize(x, dim=1)), 0
    if kind == 'center':
        m = torch.from_numpy(X.mean(0))
        return (lambda x: torch.nn.functional.normalize(x - m, dim=1)), m.numel() * 4
    if kind == 'white':
        m, W = whitener(X, y)
        return (lambda x: torch.nn.functional.normalize((x - m) @ W, dim=1)), W.numel() * 4
    if kind.startswith('whiterho'):
        m, W = whitener(X, y, float(kind[8:]))
        return (lambda x: torch.nn.functional.normalize((x - m) @ W, dim=1)), W.numel() * 4
    if kind.startswith('pow'):
        p = float(kind[3:])
        return (lambda x: torch.nn.functional.normalize(x.clamp(min=0) ** p, dim=1)), 0
    if kind.startswith('pca'):   # project on the top-r principal directions of the seen data (centred), no whitening
        r = int(kind[3:]); m = torch.from_numpy(X.mean(0)); Xc = torch.from_numpy(X) - m
        _, U = torch.linalg.eigh((Xc.T @ Xc).double()); B = U[:, -r:].float()
        return (lambda x: torch.nn.functional.normalize((x - m) @ B, dim=1)), B.numel() * 4
    if kind == 'white_nonorm':
        m, W = whitener(X, y)
        return (lambda x: (x - m) @ W), W.numel() * 4

def kth_dist(Q, R, ks, bs=2048):
    """distance^2 (for unit vectors 2-2cos) to the k-th nearest row of R, for each k in ks: (len(Q), len(ks))"""
    kmax = max(ks); out = []
    Rt = R.T.contiguous(); rn = (R * R).sum(1)
    for i in range(0, len(Q), bs):
        q = Q[i:i + bs]
        d = (q * q).sum(1, keepdim=True) - 2 * q @ Rt + rn
        v = torch.topk(d, kmax, dim=1, largest=False).values
        out.append(v[:, [k - 1 for k in ks]])
    return torch.cat(out)

def knn_samples(X, y, kind='raw', ks=(1, 10, 50), which=None):
    """all stored training samples (unbounded state; reference only)."""
    T, nb = space(X, y, kind)
    R = T(torch.from_numpy(X))
    def f(x):
        d = kth_dist(T(x), R, ks)
        return d if which is None else d[:, ks.index(which)]
    return Scorer(f, nb + R.numel() * 4)

def kmeans(Z, K, iters=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = Z[torch.randperm(len(Z), generator=g)[:K]].clone()
    for _ in range(iters):
        d = (Z * Z).sum(1, keepdim=True) - 2 * Z @ C.T + (C * C).sum(1)
        a = d.argmin(1)
        cnt = torch.bincount(a, minlength=K).float()
        S = torch.zeros_like(C).index_add_(0, a, Z)
        empty = cnt == 0
        C = torch.where(empty[:, None], C, S / cnt.clamp(min=1)[:, None])
    d = (Z * Z).sum(1, keepdim=True) - 2 * Z @ C.T + (C * C).sum(1); a = d.argmin(1)
    cnt = torch.bincount(a, minlength=K).float()
    spread = torch.zeros(K).index_add_(0, a, d.gather(1, a[:, None])[:, 0].clamp(min=0)) / cnt.clamp(min=1)
    keep = cnt > 0
    return C[keep], cnt[keep], spread[keep]

def knn_protos(X, y, kind='raw', K=200, k=1, norm=None, iters=20):
    """K k-means prototypes per class in the chosen space; score = k-th smallest (distance^2 [/ spread])."""
    T, nb = space(X, y, kind)
    Cs, Ns, Ss = [], [], []
    for c in np.unique(y):
        Z = T(torch.from_numpy(X[y == c]))
        C, n, s = kmeans(Z, min(K, len(Z)), iters)
        Cs.append(C); Ns.append(n); Ss.append(s)
    C = torch.cat(Cs); N = torch.cat(Ns); S = torch.cat(Ss)
    gs = S.median()
    Ct = C.T.contiguous(); cn = (C * C).sum(1)
    def f(x):
        z = T(x)
        d = ((z * z).sum(1, keepdim=True) - 2 * z @ Ct + cn).clamp(min=0)
        if norm == 'spread': d = d / (S + 0.1 * gs)
        if norm == 'sqrt_spread': d = d / (S + 0.1 * gs).sqrt()
        return torch.topk(d, k, dim=1, largest=False).values[:, -1]
    return Scorer(f, nb + C.numel() * 4 + N.numel() * 8)
