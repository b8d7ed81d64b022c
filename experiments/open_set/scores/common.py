"""Shared: data, the driver's open-set protocol, leave-one-class-out (LOCO) hyperparameter choice, timing."""
import os, time, json
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np, torch
from sklearn.metrics import roc_auc_score
torch.set_num_threads(1)
F = os.path.expanduser('~/.cache/neurocl/features/')
D = os.environ.get('OPENSET_DIR', 'outputs/open_set_scores/')  # labels and results.jsonl: scratch, not committed
os.makedirs(D, exist_ok=True)
PAIRS = {
    'fm': ('fashion_mnist-train-efficientnet_lite0-b56e2ab6e6090a2b', 'fashion_mnist-test-efficientnet_lite0-ba80a5076f982f30'),
    'dg': ('digits-train-efficientnet_lite0-3feda1a906ff0b4f', 'digits-test-efficientnet_lite0-63caf3047a7d5bcf'),
    'iu': ('iu_xray_reports-train-minilm-d2b9d0982640cc7e', 'iu_xray_reports-test-minilm-4a6323e82096e130'),
}

def load(name):
    tr, te = PAIRS[name]
    return (np.load(F + tr + '.npy').astype(np.float32), np.load(D + f'{name}_ytr.npy'),
            np.load(F + te + '.npy').astype(np.float32), np.load(D + f'{name}_yte.npy'))

def protocol(score_fn, Xtr, ytr, Xte, yte, T=5, per=2, verbose=False):
    """score_fn(Xs, ys) -> scorer(Xq) -> (n,) scores, higher = more unknown. Returns dict of results."""
    auc = np.full((T, T), np.nan); ab = np.full((T, T), np.nan); times = []; sizes = []
    for t in range(T - 1):
        seen_cls = np.arange(per * (t + 1))
        m = np.isin(ytr, seen_cls)
        scorer = score_fn(Xtr[m], ytr[m])
        t0 = time.perf_counter(); s = np.asarray(scorer(Xte), np.float64); times.append(time.perf_counter() - t0)
        sizes.append(getattr(scorer, 'nbytes', np.nan))
        seen = s[np.isin(yte, seen_cls)]
        thr = np.quantile(seen, 0.95)
        for k in range(t + 1, T):
            un = s[np.isin(yte, np.arange(per * k, per * (k + 1)))]
            auc[t, k] = roc_auc_score(np.r_[np.zeros(len(seen)), np.ones(len(un))], np.r_[seen, un])
            ab[t, k] = (un > thr).mean()
        if verbose:
            print(f'  t={t} auc={np.nanmean(auc[t]):.4f} chosen={getattr(scorer, "chosen", "")}', flush=True)
    return dict(mean_auroc=float(np.nanmean(auc)), mean_abstained=float(np.nanmean(ab)),
                per_t=[float(np.nanmean(auc[t])) for t in range(T - 1)], auc=auc.tolist(),
                score_s_per_10k=float(np.mean(times) * 10000 / len(Xte)), state_bytes=float(np.nanmax(sizes)),
                chosen=None)

def split80(y, frac=0.2, seed=0):
    rng = np.random.default_rng(seed); hold = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c); rng.shuffle(idx); hold[idx[:max(1, int(round(frac * len(idx))))]] = True
    return hold

def loco_auroc(make, X, y, max_fit=None, seed=0):
    """Leave-one-class-out on the seen training data: for each seen class c, fit on 80% of the others,
    AUROC of held-out 20% of c (unknown) vs held-out 20% of the others (known). Mean over c."""
    hold = split80(y, seed=seed); cls = np.unique(y); out = []
    for c in cls:
        fit = (~hold) & (y != c)
        if max_fit is not None and fit.sum() > max_fit:
            idx = np.flatnonzero(fit); rng = np.random.default_rng(seed); keep = rng.choice(idx, max_fit, replace=False)
            fit = np.zeros(len(y), bool); fit[keep] = True
        scorer = make(X[fit], y[fit])
        kn = hold & (y != c); un = hold & (y == c)
        s = np.asarray(scorer(np.r_[X[kn], X[un]]), np.float64)
        out.append(roc_auc_score(np.r_[np.zeros(kn.sum()), np.ones(un.sum())], s))
    return float(np.mean(out))

class Chooser:
    """score_fn that picks a hyperparameter per experience by LOCO on the seen training data."""
    def __init__(self, family, grid, **kw):
        self.family, self.grid, self.kw, self.log = family, grid, kw, []
    def __call__(self, X, y):
        res = {g: loco_auroc(lambda a, b: self.family(a, b, g), X, y, **self.kw) for g in self.grid}
        best = max(res, key=res.get); self.log.append((best, res))
        s = self.family(X, y, best); s.chosen = best
        return s

class Scorer:
    def __init__(self, f, nbytes, **attrs):
        self.f, self.nbytes = f, nbytes; self.__dict__.update(attrs)
    def __call__(self, Xq, bs=4096):
        return np.concatenate([self.f(torch.from_numpy(np.ascontiguousarray(Xq[i:i + bs]))).numpy() for i in range(0, len(Xq), bs)])

def save(name, res):
    path = D + 'results.jsonl'
    with open(path, 'a') as f:
        f.write(json.dumps(dict(name=name, **res)) + '\n')
    print(f"{name}: AUROC {res['mean_auroc']:.4f} abst {res['mean_abstained']:.3f} per_t {np.round(res['per_t'],3).tolist()} "
          f"time/10k {res['score_s_per_10k']:.3f}s state {res['state_bytes']/1e6:.1f}MB chosen {res.get('chosen')}", flush=True)
