"""The joint upper bound outside the stream: multinomial logistic regression on all 60k cached features.

    python experiments/split_fashion_mnist/joint_logistic_regression.py      # about 40 s on 2 cores

Reads the default run's cached EfficientNet-Lite0 features (run `python -m neurocl.run memory=ncm` once
to create them) and prints the test accuracy of scikit-learn's lbfgs fit (C=1).
"""

import time

from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression

from neurocl.encoders import FeatureCache
from neurocl.run import build
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
    cfg = compose("config")
splits = build(cfg.dataset).load()
encoder = build(cfg.encoder)
cache = FeatureCache(cfg.paths.cache_dir)
train = cache.features(encoder, splits.train, splits.name, "train").numpy()
test = cache.features(encoder, splits.test, splits.name, "test").numpy()
start = time.perf_counter()
model = LogisticRegression(C=1.0, max_iter=300).fit(train, splits.train.labels.numpy())
print(f"joint logistic regression (C=1, lbfgs, {model.n_iter_[0]} iterations, {time.perf_counter() - start:.0f} s): "
      f"test accuracy {model.score(test, splits.test.labels.numpy()):.4f}")
