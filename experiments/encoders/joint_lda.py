"""A quick check of frozen features before a continual run: joint (not continual) shrunk LDA on Split-FashionMNIST
for each EfficientNet-Lite member of conf/encoder/ensemble.yaml alone, two of them, and all three side by side.

    python experiments/encoders/joint_lda.py          # features from the cache (encoded on a miss)

LDA: class means and the pooled within-class covariance of all 60k training features, shrunk as
(1 - rho) S + rho * mean_eig * I with rho 0.01, scored on the 10k test images. Members are unit norm and
concatenated, as `encoder=ensemble` does.
"""

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from neurocl.encoders import FeatureCache
from neurocl.run import build

ROOT = Path(__file__).resolve().parents[2]


def joint_lda(train_x, train_y, test_x, test_y, rho: float = 0.01) -> float:
    x, t = train_x.double(), test_x.double()
    classes = train_y.unique()
    means = torch.stack([x[train_y == c].mean(0) for c in classes])
    residual = x - means[torch.searchsorted(classes, train_y)]
    cov = residual.T @ residual / len(x)
    d = cov.shape[0]
    shrunk = (1 - rho) * cov + rho * torch.trace(cov) / d * torch.eye(d, dtype=cov.dtype)
    weights = torch.linalg.solve(shrunk, means.T)
    scores = t @ weights - 0.5 * (means.T * weights).sum(0)
    return float((classes[scores.argmax(1)] == test_y).double().mean())


def main():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["encoder=ensemble", "device=cpu"])
    splits = build(cfg.dataset).load()
    cache = FeatureCache(cfg.paths.cache_dir)
    ensemble = build(cfg.encoder)
    features = {m.name: [cache.features(m, s, splits.name, n) for s, n in ((splits.train, "train"), (splits.test, "test"))]
                for m in ensemble.members}
    names = list(features)
    for group in [[n] for n in names] + [names[1:], names]:
        train = ensemble.combine([features[n][0] for n in group]) if len(group) > 1 else features[group[0]][0]
        test = ensemble.combine([features[n][1] for n in group]) if len(group) > 1 else features[group[0]][1]
        print(f"{' + '.join(group):<60} joint LDA accuracy {joint_lda(train, splits.train.labels, test, splits.test.labels):.4f}")


if __name__ == "__main__":
    main()
