"""Our streaming LDA against Avalanche's StreamingLDA strategy: same stream, same work, one run.

    python benchmarks/slda_vs_avalanche.py                    # the default protocol (Split-FashionMNIST)
    python benchmarks/slda_vs_avalanche.py experiment=digits_quick

Both learn the five experiences of the default stream from the cached
features; each then predicts the full test set after the last experience.
Training time is what the driver spends: our `observe` over batches of
`observe_batch_size`, Avalanche's `train` over the very same experience
(its data loader and per-sample covariance update). Reports the seconds,
the ratio and both A_last, so that speed is not bought with accuracy.
"""

import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from neurocl.driver import Features, evaluate
from neurocl.encoders import FeatureCache
from neurocl.run import build
from stream_loop import machine

ROOT = Path(__file__).resolve().parents[1]


def learn_and_test(memory, stream, train, test, observe_batch_size) -> tuple[float, float, float]:
    """(train seconds, predict seconds, A_last) of one memory over the whole stream."""
    start = time.perf_counter()
    for experience in stream.experiences:
        if hasattr(memory, "train_experience"):
            memory.train_experience(stream.benchmark.train_stream[experience.index])
        else:
            rows = experience.train_idx
            for i in range(0, len(rows), observe_batch_size):
                memory.observe(train.x[rows[i:i + observe_batch_size]], train.y[rows[i:i + observe_batch_size]])
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    accuracies = [evaluate(memory, test, e, False, 4096)[0] for e in stream.experiences]
    return train_s, time.perf_counter() - start, sum(accuracies) / len(accuracies)


def main(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        ours_cfg = compose("config", overrides=["memory=slda", *overrides])
        theirs_cfg = compose("config", overrides=["memory=avalanche_slda", "device=cpu", *overrides])
    splits = build(ours_cfg.dataset).load()
    encoder = build(ours_cfg.encoder)
    cache = FeatureCache(ours_cfg.paths.cache_dir)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)
    stream = build(ours_cfg.scenario).build(train.x, train.y, test.x, test.y, splits.num_classes)
    results = {}
    for name, cfg in (("neurocl slda", ours_cfg), ("avalanche StreamingLDA", theirs_cfg)):
        torch.manual_seed(0)
        memory = build(cfg.memory, dim=encoder.dim, num_classes=splits.num_classes)
        train_s, predict_s, a_last = learn_and_test(memory, stream, train, test, cfg.observe_batch_size)
        results[name] = {"train_s": round(train_s, 3), "predict_s": round(predict_s, 3), "A_last": round(a_last, 4)}
        print(name, results[name], flush=True)
    ours, theirs = results["neurocl slda"], results["avalanche StreamingLDA"]
    report = {"dataset": splits.name, "train_samples": len(train.y), "dim": encoder.dim, "results": results,
              "train_speedup": round(theirs["train_s"] / ours["train_s"], 1), "machine": machine()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
