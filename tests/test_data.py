import gzip

import numpy as np
import pytest
import torch

from neurocl.data import Digits, FashionMNIST
from neurocl.data.idx import read_idx, write_idx
from neurocl.errors import ConfigError, DataError


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    assert np.array_equal(read_idx(tmp_path / name), array)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
    write_idx(tmp_path / name, floats)  # multi-byte types are big-endian on disk
    assert np.array_equal(read_idx(tmp_path / name), floats)


def test_idx_header_is_checked(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((4, 3), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(DataError, match="bytes follow"):
        read_idx(tmp_path / "short")
    (tmp_path / "notgz.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "notgz.gz")


def test_fashion_mnist_from_idx_files(fmnist_dir):
    splits = FashionMNIST(root=str(fmnist_dir), image_shape=[1, 28, 28]).load()
    assert splits.train.images.shape == (80, 1, 28, 28) and len(splits.test) == 30
    assert splits.train.images.max() == 1.0 and splits.train.images.min() >= 0
    assert splits.num_classes == 10 and splits.train.labels.bincount().tolist() == [8] * 10
    subset = FashionMNIST(root=str(fmnist_dir), train_size=20).load().train
    assert len(subset) == 20


def test_fashion_mnist_bad_input(fmnist_dir, tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*dataset.root"):
        FashionMNIST(root=str(tmp_path / "nowhere")).load()
    with pytest.raises(ConfigError, match="dataset.train_size"):
        FashionMNIST(root=str(fmnist_dir), train_size=-5)
    with pytest.raises(ConfigError, match=r"dataset.image_shape.*\[1, 28, 28\]"):
        FashionMNIST(root=str(fmnist_dir), image_shape=[3, 32, 32]).load()
    with gzip.open(fmnist_dir / "t10k-labels-idx1-ubyte.gz", "wb") as f:  # labels of another split
        f.write(bytes([0, 0, 8, 1]) + (7).to_bytes(4, "big") + bytes(7))
    with pytest.raises(DataError, match="30 samples but 7 labels"):
        FashionMNIST(root=str(fmnist_dir)).load()


def test_digits_split_is_fixed_and_stratified():
    a, b = Digits().load(), Digits().load()
    assert a.train.images.shape[1:] == (1, 8, 8) and len(a.train) + len(a.test) == 1797
    assert np.array_equal(a.test.labels, b.test.labels)
    assert a.test.labels.bincount().min() >= 43


def test_corruptions_change_images_not_labels():
    from neurocl.data.base import Split
    from neurocl.data.corruptions import corrupt

    split = Split(torch.full((6, 1, 10, 10), 0.5), torch.arange(6))
    noisy = corrupt(split, "gaussian_noise", 0.3)
    assert torch.equal(noisy.labels, split.labels) and 0 <= noisy.images.min() and noisy.images.max() <= 1
    assert (noisy.images - split.images).abs().mean() > 0.1
    assert torch.equal(corrupt(split, "gaussian_noise", 0.3).images, noisy.images)  # same seed, same images
    occluded = corrupt(split, "occlusion", 0.4)
    assert ((occluded.images == 0).sum(dim=(1, 2, 3)) == 16).all()  # one 4 x 4 square per image
    assert torch.equal(split.images, torch.full((6, 1, 10, 10), 0.5))  # the original is untouched
    contrast = corrupt(split, "contrast", 0.5)  # a flat image is its own mean: unchanged
    assert torch.equal(contrast.images, split.images)
    line = torch.zeros(2, 1, 10, 10)
    line[:, :, :, 5] = 1.0
    edge = Split(line, torch.arange(2))
    blurred = corrupt(edge, "blur", 0.3).images  # sigma 0.3 px: the bright column spreads to its neighbours
    assert blurred[0, 0, :, 5].max() < 1 and (blurred[0, 0, :, 4] > 0).all()
    assert float(blurred.sum()) == pytest.approx(float(edge.images.sum()), rel=1e-5)  # a blur keeps the mass
    with pytest.raises(ConfigError, match="kind"):
        corrupt(split, "fog", 0.3)
    with pytest.raises(ConfigError, match="severity"):
        corrupt(split, "occlusion", 0.0)


def test_a_condition_with_a_misspelt_key_is_named():
    from neurocl.data.base import Split
    from neurocl.data.corruptions import corrupt_condition

    split = Split(torch.zeros(2, 1, 4, 4), torch.arange(2))
    with pytest.raises(ConfigError, match="conditions.noise"):
        corrupt_condition(split, "noise", {"kind": "gaussian_noise", "severty": 0.3})
