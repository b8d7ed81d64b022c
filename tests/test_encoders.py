import json

import numpy as np
import pytest
import torch

from neurocl.data import Digits
from neurocl.data.base import Split
from neurocl.encoders import EfficientNetLite, Ensemble, FeatureCache, Pixels
from neurocl.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits():
    return Digits().load()


def pixels():
    return Pixels(image_shape=[1, 8, 8])


def test_pixels_are_unit_norm(digits):
    f = pixels().encode(digits.train.images[:10])
    assert f.shape == (10, 64) and torch.allclose(f.norm(dim=1), torch.ones(10))
    assert Pixels([1, 8, 8], resolution=4).encode(digits.train.images[:2]).shape == (2, 16)


def test_efficientnet_lite0_real_weights():
    encoder = EfficientNetLite(resolution=32, batch_size=4, device="cpu")
    grey = torch.rand(3, 1, 28, 28)
    f = encoder.encode(grey)
    assert f.shape == (3, 1280) and torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(f, encoder.encode(grey.expand(-1, 3, -1, -1)), atol=1e-5)  # grey == copied RGB
    assert not torch.allclose(f[0], f[1])
    assert len(encoder.cache_key()["weights_sha256"]) == 64
    with pytest.raises(DataError, match="weights not found"):
        EfficientNetLite(weights="/nonexistent.pth")


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_lite_variants_load_their_packaged_weights_and_key_the_cache_apart(variant):
    lite0, larger = EfficientNetLite(resolution=32, device="cpu"), EfficientNetLite(variant, resolution=32, device="cpu")
    images = torch.rand(2, 1, 28, 28)
    assert larger.encode(images).shape == (2, 1280)
    assert not torch.allclose(larger.encode(images), lite0.encode(images))
    assert larger.cache_key()["name"] == f"efficientnet_{variant}" != lite0.cache_key()["name"]
    assert larger.cache_key()["weights_sha256"] != lite0.cache_key()["weights_sha256"]


def test_an_unknown_lite_variant_is_named():
    with pytest.raises(ConfigError, match="encoder.variant"):
        EfficientNetLite("lite4")


def test_cache_miss_then_hit(tmp_path, digits):
    cache = FeatureCache(tmp_path)
    first = cache.features(pixels(), digits.train, "digits", "train")
    second = cache.features(pixels(), digits.train, "digits", "train")
    assert (cache.misses, cache.hits) == (1, 1) and torch.equal(first, second)
    # other data or other preprocessing: another entry, never the old one
    cache.features(pixels(), digits.test, "digits", "train")
    cache.features(Pixels([1, 8, 8], normalize=False), digits.train, "digits", "train")
    assert cache.misses == 3 and len(list(tmp_path.glob("*.npy"))) == 3


def test_an_ensemble_reads_its_members_cache_entries_and_averages_their_cosines(tmp_path, digits):
    small, raw = Pixels([1, 8, 8], resolution=4), Pixels([1, 8, 8], normalize=False)
    ensemble = Ensemble({"small": small, "raw": raw})
    assert ensemble.dim == 16 + 64 and ensemble.accepts == ("image",)
    cache = FeatureCache(tmp_path)
    features = cache.features(ensemble, digits.train, "digits", "train")
    assert (cache.misses, cache.hits) == (2, 0) and len(list(tmp_path.glob("*.npy"))) == 2  # one entry per member
    assert torch.allclose(features, ensemble.encode(digits.train.images), atol=1e-6)
    # a member alone now hits its entry, and the ensemble again encodes nothing
    cache.features(small, digits.train, "digits", "train")
    assert torch.equal(cache.features(ensemble, digits.train, "digits", "train"), features)
    assert (cache.misses, cache.hits) == (2, 3)
    # the ensemble's cosine is the mean of its members' cosines, whatever their scales
    cos = lambda f: torch.nn.functional.normalize(f[:5], dim=1) @ torch.nn.functional.normalize(f[:5], dim=1).T
    images = digits.train.images
    assert torch.allclose(features[:5] @ features[:5].T, (cos(small.encode(images)) + cos(raw.encode(images))) / 2,
                          atol=1e-5)
    assert not torch.allclose(cos(raw.encode(images)), cos(small.encode(images)), atol=1e-3)  # control: they differ


def test_an_ensemble_needs_two_members_of_one_modality():
    with pytest.raises(ConfigError, match="at least two members"):
        Ensemble({"only": pixels()})

    class Text:
        name, dim, batch_size, accepts = "text", 4, 8, ("text",)

    with pytest.raises(ConfigError, match="share no modality"):
        Ensemble({"image": pixels(), "text": Text()})


def test_the_ensemble_preset_composes_three_lite_models():
    from conftest import compose
    from hydra.utils import instantiate

    encoder = instantiate(compose("encoder=ensemble", "device=cpu").encoder)
    assert [m.name for m in encoder.members] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert encoder.dim == 3 * 1280


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta", "shape", "no_meta"])
def test_cache_corruption_is_detected_kept_and_rebuilt(tmp_path, digits, damage, caplog):
    cache = FeatureCache(tmp_path)
    good = cache.features(pixels(), digits.train, "digits", "train")
    data_path, meta_path = cache.paths(cache.key(pixels(), digits.train, "digits", "train"))
    if damage == "truncate":
        data_path.write_bytes(data_path.read_bytes()[:1000])
    elif damage == "flip":
        raw = bytearray(data_path.read_bytes())
        raw[-5] ^= 0xFF
        data_path.write_bytes(bytes(raw))
    elif damage == "meta":
        meta_path.write_text("{not json")
    elif damage == "shape":
        meta = json.loads(meta_path.read_text())
        meta["shape"] = [5, 64]
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.unlink()
    again = cache.features(pixels(), digits.train, "digits", "train")
    assert torch.equal(again, good) and cache.misses == 2 and cache.hits == 0
    assert "unusable" in caplog.text and "Moved it aside" in caplog.text
    assert list(tmp_path.glob("*.corrupt"))  # nothing lost: the damaged entry is kept aside
    assert cache.features(pixels(), digits.train, "digits", "train") is not None and cache.hits == 1


def test_nan_images_and_features_are_refused(digits):
    images = digits.train.images[:4].clone()
    images[2, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="NaN or inf in 1 of 4 rows"):
        Split(images, digits.train.labels[:4])

    class Broken(Pixels):
        def encode(self, images):
            out = super().encode(images)
            out[0, 0] = float("inf")
            return out

    with pytest.raises(DataError, match="features from encoder pixels"):
        FeatureCache(None).features(Broken([1, 8, 8]), digits.train, "digits", "train")
