"""scikit-learn's 8x8 handwritten digits (1,797 images), with a fixed stratified split."""

import torch

from neurocl.data.base import Split, Splits
from neurocl.errors import ConfigError


class Digits:
    def __init__(self, test_fraction: float = 0.25, image_shape: list[int] | None = None):
        if not 0 < test_fraction < 1:
            raise ConfigError("dataset.test_fraction", test_fraction, "must be in (0, 1)", "set dataset.test_fraction=0.25")
        self.test_fraction, self.image_shape = test_fraction, image_shape

    def load(self) -> Splits:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        x = torch.from_numpy(data.images).float().div_(16).unsqueeze(1)
        y = torch.from_numpy(data.target).long()
        # The split is part of the dataset, not of the run: fixed, whatever the seed.
        tr, te = train_test_split(torch.arange(len(y)), test_size=self.test_fraction,
                                  stratify=y, random_state=0)
        ids = [f"sklearn-digits#{i}" for i in range(len(y))]
        split = lambda rows: Split(x[rows], y[rows], [ids[i] for i in rows.tolist()])
        return Splits("digits", split(tr), split(te),
                      [str(i) for i in range(10)]).check_image_shape(self.image_shape)
