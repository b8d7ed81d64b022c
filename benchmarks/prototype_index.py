"""Prototype-index backends on real features: insertion throughput, query latency and recall.

    python benchmarks/prototype_index.py                   # 1k, 10k, 100k prototypes
    python benchmarks/prototype_index.py --sizes 1000 10000

Database: EfficientNet-Lite0 (64 px) features of the Fashion-MNIST training
images, whitened and projected to 256-d as the store does; sizes above 60k
repeat them with small Gaussian jitter (std 0.01 before normalising).
Queries: 1,000 test images. Recall@10 of each backend against exact search.
Also measured: what keeping the index consistent with a new whitening costs
(refresh + rebuild at the store's default budget of 5,000 prototypes).
"""

import argparse
import json
import time

import numpy as np
from hydra import compose, initialize_config_dir

from neurocl.driver import Features
from neurocl.encoders import FeatureCache
from neurocl.memory.backends import ExactBackend, HnswBackend
from neurocl.memory.conditioning import Conditioner
from neurocl.run import build
from stream_loop import ROOT, machine


def features():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config")
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)
    return train.x.numpy(), train.y.numpy(), test.x.numpy()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    xtr, ytr, xte = features()
    conditioner = Conditioner(xtr.shape[1], 10, "whiten", projection_dim=256)
    conditioner.update(xtr, ytr)
    conditioner.refresh()
    base, queries = conditioner.transform(xtr), conditioner.transform(xte[: args.queries])
    rng = np.random.default_rng(0)
    print(json.dumps(machine()))
    print(f"{'N':>7} {'backend':<8} {'insert/s':>10} {'ms/query b=1':>13} {'ms/query b=1000':>16} {'recall@10':>9}")
    rows = []
    for n in args.sizes:
        reps = -(-n // len(base))
        db = np.concatenate([base + (0.01 * rng.standard_normal(base.shape) if r else 0) for r in range(reps)])[:n]
        db = (db / np.linalg.norm(db, axis=1, keepdims=True)).astype(np.float32)
        truth = None
        for name, backend in (("exact", ExactBackend(256, precision="float32", device="cpu")), ("hnswlib", HnswBackend(256))):
            _, insert_s = timed(lambda: backend.upsert(np.arange(n), db))
            _, single_s = timed(lambda: [backend.search(q[None], 10) for q in queries[:200]])
            (ids, _), batch_s = timed(lambda: backend.search(queries, 10))
            truth = ids if truth is None else truth
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, ids)])
            row = {"N": n, "backend": name, "insert_per_s": n / insert_s, "ms_per_query_b1": 1e3 * single_s / 200,
                   "ms_per_query_b1000": 1e3 * batch_s / len(queries), "recall_at_10": recall}
            rows.append(row)
            print(f"{n:>7} {name:<8} {row['insert_per_s']:>10.0f} {row['ms_per_query_b1']:>13.3f} "
                  f"{row['ms_per_query_b1000']:>16.4f} {recall:>9.3f}")
    # Re-indexing after a conditioning refresh, at the store's default budget.
    raw = xtr[:5000]
    for name, backend in (("exact", ExactBackend(256, precision="float32", device="cpu")), ("hnswlib", HnswBackend(256))):
        _, refresh_s = timed(conditioner.refresh)
        _, rebuild_s = timed(lambda: backend.rebuild(np.arange(5000), conditioner.transform(raw)))
        print(f"refresh whitening {refresh_s:.2f} s + rebuild {name} index of 5,000: {rebuild_s:.2f} s")


if __name__ == "__main__":
    main()
