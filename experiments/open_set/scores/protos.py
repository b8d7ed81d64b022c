"""kNN over k-means prototypes per class (bounded state), cosine geometry on the raw L2-normalised features,
optionally normalised per prototype by its spread (mean squared distance of its members)."""
import numpy as np, torch
from common import *
from knn import kmeans, kth_dist
_pc = {}
def class_protos(Xc, c, K, iters=15, p=1.0):
    key = (c, len(Xc), K, p, float(Xc[:, :32].sum()))
    if key not in _pc:
        Z = torch.nn.functional.normalize(torch.from_numpy(Xc).clamp(min=0) ** p if p != 1 else torch.from_numpy(Xc), dim=1)
        _pc[key] = kmeans(Z, min(K, len(Z)), iters)
    return _pc[key]

def proto_knn(X, y, K=200, k=1, norm=None, p=1.0, floor=0.1):
    Cs, Ns, Ss = zip(*[class_protos(X[y == c], int(c), K, p=p) for c in np.unique(y)])
    C = torch.cat(Cs); N = torch.cat(Ns); S = torch.cat(Ss); gs = S[N > 1].median()
    Sn = S.clone(); Sn[N <= 1] = gs       # singletons: the median spread
    Ct = C.T.contiguous(); cn = (C * C).sum(1)
    def f(x):
        z = torch.nn.functional.normalize(x.clamp(min=0) ** p if p != 1 else x, dim=1)
        d = ((z * z).sum(1, keepdim=True) - 2 * z @ Ct + cn).clamp(min=0)
        if norm == 'spread': d = d / (Sn + floor * gs)
        elif norm == 'sqrt': d = d.sqrt() / (Sn + floor * gs).sqrt() if False else d / (Sn + floor * gs).sqrt()
        return torch.topk(d, k, dim=1, largest=False).values[:, -1]
    return Scorer(f, C.numel() * 4 + N.numel() * 8 + S.numel() * 4)
