"""The open-set score's share of the default memory's prediction time, on the default stream's cached features.

    python benchmarks/unknown_score.py

Trains the default memory on the whole Split-FashionMNIST training set (cached EfficientNet-Lite0 features),
then times predict() on the 10k test features against the unknown score alone.
"""

import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from neurocl.driver import Features
from neurocl.encoders import FeatureCache
from neurocl.run import build

ROOT = Path(__file__).resolve().parents[1]


def main(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    splits, encoder = build(cfg.dataset).load(), build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = cache.features(encoder, splits.test, splits.name, "test")
    memory = build(cfg.memory, dim=train.x.shape[1], num_classes=splits.num_classes)
    for i in range(0, len(train.y), cfg.observe_batch_size):
        rows = slice(i, i + cfg.observe_batch_size)
        memory.observe(train.x[rows], train.y[rows], 0)
    memory.end_experience()  # settles: fits the readout
    prediction = memory.predict(test[:10])  # fits the score
    start = time.perf_counter()
    prediction = memory.predict(test)
    total = time.perf_counter() - start
    score = memory._fitted[1]  # the fitted open-set score (neurocl/memory/unknown.py)
    start = time.perf_counter()
    score(test)
    part = time.perf_counter() - start
    print(f"predict {len(test)} queries: {total:.2f} s, of which the unknown score {part:.2f} s ({part / total:.0%})")


if __name__ == "__main__":
    main(sys.argv[1:])
