"""The published reference of the default protocol, on the real Fashion-MNIST (slow: encodes 70k images once)."""

from pathlib import Path

import pytest

from conftest import compose
from neurocl.run import execute

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_ncm_reproduces_reference_on_split_fashion_mnist(tmp_path):
    results = execute(compose("experiment=split_fmnist_ncm"), tmp_path)
    assert results["metrics"]["A_last"] == pytest.approx(0.751, abs=0.01)
    assert results["metrics"]["Abar"] == pytest.approx(0.815, abs=0.01)
