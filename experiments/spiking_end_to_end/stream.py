"""A memory that has learned a whole stream as the driver feeds it (class-incremental, the config's seed, shuffled
observe batches of observe_batch_size, settled after each experience), for the scripts of this study."""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from neurocl.encoders import FeatureCache
from neurocl.run import build

ROOT = Path(__file__).resolve().parents[2]


def learned(overrides: list[str]):
    """(cfg, memory, splits, train features, test features) after the whole stream."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled)
    train = cache.features(encoder, splits.train, splits.name, "train")
    test = cache.features(encoder, splits.test, splits.name, "test")
    stream = build(cfg.scenario).build(train, splits.train.labels, test, splits.test.labels, splits.num_classes)
    memory = build(cfg.memory, dim=encoder.dim, num_classes=splits.num_classes)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    for e in stream.experiences:
        order = e.train_idx[torch.randperm(len(e.train_idx), generator=shuffle)]
        for i in range(0, len(order), cfg.observe_batch_size):
            rows = order[i:i + cfg.observe_batch_size]
            memory.observe(train[rows], splits.train.labels[rows], e.index, ids=rows)
        memory.end_experience()  # as the driver does: the experience's held-out samples join the store here
    return cfg, memory, splits, train, test
