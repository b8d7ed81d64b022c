"""The modality-general stream: splits of any modality, encoders that declare what they accept,
and a feature cache keyed on everything that changes the features."""

import json

import numpy as np
import pytest
import torch

from neurocl.data import ImageText, Split
from neurocl.encoders import FeatureCache, MiniLM, Pixels, check_accepts, encode_split
from neurocl.errors import ConfigError, DataError


def texts(n=6):
    return [f"report {i}: the lungs are clear" for i in range(n)]


def test_a_text_split_keeps_ids_through_subsets_and_hashes_its_texts():
    split = Split(texts(), torch.arange(6) % 2, [f"CXR{i}" for i in range(6)], "text", meta=[{"row": i} for i in range(6)])
    sub = split.take(torch.tensor([4, 1]))
    assert sub.data == [texts()[4], texts()[1]] and sub.ids == ["CXR4", "CXR1"] and sub.meta == [{"row": 4}, {"row": 1}]
    same = Split(texts(), torch.arange(6) % 2, modality="text")
    assert same.fingerprint() == split.fingerprint()  # ids and records are not content
    changed = texts()
    changed[3] = changed[3].replace("clear", "hazy")
    assert Split(changed, torch.arange(6) % 2, modality="text").fingerprint() != split.fingerprint()
    # length-prefixed: moving a boundary between two texts changes the hash
    assert Split(["ab", "c"], torch.zeros(2), modality="text").fingerprint() != \
        Split(["a", "bc"], torch.zeros(2), modality="text").fingerprint()


def test_splits_refuse_mismatched_ids_records_and_non_text_samples():
    with pytest.raises(DataError, match="2 sample ids for 3 samples"):
        Split(texts(3), torch.zeros(3), ["a", "b"], "text")
    with pytest.raises(DataError, match="non-string"):
        Split(["ok", 3, "ok"], torch.zeros(3), modality="text")
    with pytest.raises(DataError, match="2 images but 3 texts"):
        ImageText(torch.rand(2, 1, 4, 4), texts(3))


def test_image_text_pairs_subset_together():
    pairs = ImageText(torch.arange(4.0).view(4, 1, 1, 1) / 4, texts(4))
    split = Split(pairs, torch.arange(4), modality="image_text")
    sub = split.take(torch.tensor([3, 0]))
    assert sub.data.texts == [texts()[3], texts()[0]] and sub.data.images.flatten().tolist() == [0.75, 0.0]
    flipped = ImageText(pairs.images.flip(0), pairs.texts)
    assert Split(flipped, torch.arange(4), modality="image_text").fingerprint() != split.fingerprint()


def test_an_encoder_on_the_wrong_modality_is_a_config_error_before_encoding():
    text_split = Split(texts(), torch.zeros(6), modality="text")
    with pytest.raises(ConfigError, match="encoder='pixels'.*encodes image samples.*holds text samples"):
        check_accepts(Pixels([1, 8, 8]), text_split.modality, "dataset iu_xray_reports")
    check_accepts(Pixels([1, 8, 8]), "image", "digits")  # positive control: the right modality passes
    with pytest.raises(ConfigError, match="accepts text"):
        encode_split(Pixels([1, 8, 8]), text_split)


def test_a_text_encoder_on_an_image_dataset_fails_before_anything_is_encoded(tmp_path):
    from conftest import compose
    from neurocl.run import execute

    cfg = compose("dataset=digits", "encoder=minilm", f"paths.cache_dir={tmp_path}/cache")
    with pytest.raises(ConfigError, match="encoder='minilm'.*holds image samples"):
        execute(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    # pixel corruptions of a text dataset: refused before encoding too
    from test_data_iu_xray import tiny_reports, write_archive

    archive = write_archive(tmp_path / "NLMCXR_reports.tgz", tiny_reports())
    cfg = compose("experiment=iu_xray", f"dataset.path={archive}", "dataset.num_terms=3", "dataset.min_reports=3",
                  "dataset.test_fraction=0.5", "scenario.classes_per_experience=1", "conditions=corrupted",
                  f"paths.cache_dir={tmp_path}/cache")
    with pytest.raises(ConfigError, match="pixel corruptions apply to image datasets"):
        execute(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()


class Keyed(Pixels):
    """Pixels that claim to run on another device/dtype: what a GPU run in bf16 would key."""

    def __init__(self, device, dtype):
        super().__init__([1, 8, 8])
        self.device_name, self.dtype_name = device, dtype

    def cache_key(self):
        return {**super().cache_key(), "device": self.device_name, "dtype": self.dtype_name}


def test_the_cache_keys_device_and_dtype_apart(tmp_path):
    split = Split(torch.rand(5, 1, 8, 8), torch.arange(5))
    cache = FeatureCache(tmp_path)
    cache.features(Keyed("cpu", "float32"), split, "d", "train")
    cache.features(Keyed("cuda", "bfloat16"), split, "d", "train")
    cache.features(Keyed("cpu", "float32"), split, "d", "train")
    assert (cache.misses, cache.hits) == (2, 1) and len(list(tmp_path.glob("*.npy"))) == 2

    class Unkeyed(Pixels):
        def cache_key(self):
            return {"name": "pixels"}

    with pytest.raises(TypeError, match="lacks.*device.*dtype"):
        cache.features(Unkeyed([1, 8, 8]), split, "d", "train")


@pytest.mark.parametrize("damage", ["nan", "float64", None])
def test_a_nan_or_wrong_dtype_entry_with_a_valid_checksum_is_quarantined(tmp_path, damage, caplog):
    from neurocl.encoders.cache import _file_digest

    split = Split(torch.rand(5, 1, 8, 8), torch.arange(5))
    cache = FeatureCache(tmp_path)
    good = cache.features(Pixels([1, 8, 8]), split, "d", "train")
    data_path, meta_path = cache.paths(cache.key(Pixels([1, 8, 8]), split, "d", "train"))
    if damage is not None:  # a bad entry whose metadata vouches for it: only the content check can catch it
        array = good.numpy().copy()
        if damage == "nan":
            array[2, 3] = np.nan
        np.save(data_path, array.astype(np.float64 if damage == "float64" else np.float32))
        meta = json.loads(meta_path.read_text())
        meta["checksum"] = _file_digest(data_path)
        meta_path.write_text(json.dumps(meta))
    again = cache.features(Pixels([1, 8, 8]), split, "d", "train")
    assert torch.equal(again, good) and torch.isfinite(again).all()
    if damage is None:  # positive control: an intact entry is a hit
        assert cache.hits == 1 and not list(tmp_path.glob("*.corrupt"))
    else:
        assert cache.hits == 0 and cache.misses == 2 and list(tmp_path.glob("*.corrupt"))
        assert ("NaN" if damage == "nan" else "float64") in caplog.text


@pytest.fixture(scope="module")
def minilm():
    return MiniLM(device="cpu", batch_size=4)


def test_minilm_embeds_texts_offline(minilm):
    sentences = ["The heart is enlarged.", "Cardiomegaly is present.", "No fracture of the spine.", ""]
    features = encode_split(minilm, Split(sentences, torch.zeros(4), modality="text"))
    assert features.shape == (4, 384) and torch.allclose(features.norm(dim=1), torch.ones(4), atol=1e-5)
    sims = features @ features.T
    assert sims[0, 1] > sims[0, 2] + 0.1  # paraphrases closer than an unrelated finding
    key = minilm.cache_key()
    assert key["name"] == "minilm" and key["device"] == "cpu" and key["dtype"] == "float32"
    assert len(key["model_sha256"]) == 64


def test_hf_text_needs_a_local_model(tmp_path):
    from neurocl.encoders import HFText

    with pytest.raises(ConfigError, match="encoder.path"):
        HFText(None)
    with pytest.raises(DataError, match="config.json missing.*never downloads"):
        HFText(str(tmp_path))
