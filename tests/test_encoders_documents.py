"""timm, Donut, LayoutLMv3 and OCR-text encoders: tiny random models saved to tmp_path, real OCR on real pages.

No claims about feature quality here: shapes, determinism, finiteness, that
different pages differ, that features equal a direct forward of the same
model, and that the cache key follows the weights. OCR accuracy is measured
(character error rate) on a page rendered from known text and on skimage's page.
"""

import json
import time

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from neurocl.encoders.documents import Donut, LayoutLMv3, words_and_boxes
from neurocl.encoders.ocr_text import Line, OCRText, character_error_rate
from neurocl.encoders.timm_model import TimmEncoder
from neurocl.errors import ConfigError, DataError

LINES = ["Continual learning keeps old classes", "while new ones arrive in 5 steps.",
         "Prototype memory: 128 units, rate 0.25"]


def render(lines, size=28, width=640) -> torch.Tensor:
    """A grey (1, H, W) page in [0, 1]: black text on white, Pillow's built-in font."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new("L", (width, 40 + 2 * size * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 2 * size * i), line, fill=0, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]


def skimage_page() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.page().astype(np.float32) / 255)[None]


def squash(text: str) -> str:
    return " ".join(text.split())  # line breaks and spacing are layout, not characters read


# ---------------------------------------------------------------- timm

def save_timm(path, model_name="test_vit", seed=0, **kwargs):
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, **kwargs).eval()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)
    return model


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_features_equal_a_direct_forward_of_the_checkpoint(tmp_path, suffix):
    model = save_timm(tmp_path / f"vit{suffix}", num_classes=0)
    encoder = TimmEncoder("test_vit", str(tmp_path / f"vit{suffix}"), normalize=False, device="cpu")
    assert encoder.input_size == (160, 160) and encoder.dim == model.num_features == 64
    images = torch.rand(2, 3, 160, 160)  # already the input size: resizing is the identity
    with torch.no_grad():
        direct = model((images - 0.5) / 0.5)  # test_vit's pretrained_cfg: mean = std = 0.5
    features = encoder.encode(images)
    assert features.shape == (2, 64) and torch.allclose(features, direct, atol=1e-5)
    grey = torch.rand(1, 1, 100, 120)  # any size; grey is copied to three channels
    assert torch.allclose(encoder.encode(grey), encoder.encode(grey.expand(-1, 3, -1, -1)), atol=1e-6)
    encoder.normalize = True
    unit = encoder.encode(images)
    assert torch.allclose(unit, direct / direct.norm(dim=1, keepdim=True), atol=1e-5)


def test_timm_checkpoint_with_a_classifier_loads_without_it(tmp_path):
    with_head = save_timm(tmp_path / "head.pth", num_classes=10)  # as timm's released weights come
    encoder = TimmEncoder("test_vit", str(tmp_path / "head.pth"), normalize=False, device="cpu")
    images = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(encoder.encode(images), with_head.forward_head(with_head.forward_features(
            (images - 0.5) / 0.5), pre_logits=True), atol=1e-5)


def test_timm_cache_key_follows_the_checkpoint_content(tmp_path):
    save_timm(tmp_path / "a.pth", seed=0, num_classes=0)
    encoder = TimmEncoder("test_vit", str(tmp_path / "a.pth"), device="cpu")
    key = encoder.cache_key()
    assert {"name", "device", "dtype", "checkpoint_sha256", "mean", "std", "input_size"} <= key.keys()
    assert key["name"] == "timm_test_vit" and key["device"] == "cpu" and key["dtype"] == "float32"
    assert encoder.cache_key() == key and json.dumps(key)  # stable, and the feature cache can hash it
    save_timm(tmp_path / "a.pth", seed=1, num_classes=0)  # other weights, same file name
    assert encoder.cache_key()["checkpoint_sha256"] != key["checkpoint_sha256"]


def test_timm_wrong_checkpoint_names_the_file_and_the_fix(tmp_path):
    save_timm(tmp_path / "other.pth", "test_vit2", num_classes=0)
    with pytest.raises(DataError, match=r"other\.pth does not fit timm model test_vit.*Fix: set encoder.model_name"):
        TimmEncoder("test_vit", str(tmp_path / "other.pth"), device="cpu")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"cannot read checkpoint .*junk\.pth"):
        TimmEncoder("test_vit", str(tmp_path / "junk.pth"), device="cpu")
    with pytest.raises(DataError, match="checkpoint not found"):
        TimmEncoder("test_vit", str(tmp_path / "missing.pth"), device="cpu")
    with pytest.raises(ConfigError, match="encoder.model_name"):
        TimmEncoder("no_such_model_xyz", str(tmp_path / "other.pth"), device="cpu")
    with pytest.raises(ConfigError, match="encoder.checkpoint"):
        TimmEncoder("test_vit", None)


def test_timm_config_instantiates(tmp_path):
    save_timm(tmp_path / "vit.safetensors", num_classes=0)
    assert OmegaConf.is_missing(compose("encoder=timm").encoder, "checkpoint")  # the user brings weights
    cfg = compose("encoder=timm", "encoder.model_name=test_vit", f"encoder.checkpoint={tmp_path / 'vit.safetensors'}",
                  "device=cpu")
    encoder = instantiate(cfg.encoder)
    assert isinstance(encoder, TimmEncoder) and encoder.accepts == ("image", "page")
    assert encoder.encode(torch.rand(2, 1, 64, 64)).shape == (2, 64)


# ---------------------------------------------------------------- Donut

@pytest.fixture(scope="module")
def donut_dirs(tmp_path_factory):
    """A tiny random Donut as released (vision-encoder-decoder) and as a bare donut-swin encoder."""
    from transformers import (BertConfig, DonutImageProcessor, DonutSwinConfig, DonutSwinModel,
                              VisionEncoderDecoderConfig, VisionEncoderDecoderModel)

    torch.manual_seed(0)
    swin = DonutSwinConfig(image_size=[64, 48], patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                           window_size=4)
    decoder = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, is_decoder=True, add_cross_attention=True)
    processor = DonutImageProcessor(size={"height": 64, "width": 48}, do_align_long_axis=False)
    dirs = {"vision-encoder-decoder": tmp_path_factory.mktemp("donut_ved"), "donut-swin": tmp_path_factory.mktemp("swin")}
    VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(swin, decoder)).save_pretrained(
        dirs["vision-encoder-decoder"])
    DonutSwinModel(swin).save_pretrained(dirs["donut-swin"])
    for d in dirs.values():
        processor.save_pretrained(d)
    return dirs


@pytest.mark.parametrize("kind", ["vision-encoder-decoder", "donut-swin"])
def test_donut_features_are_deterministic_finite_and_tell_pages_apart(donut_dirs, kind):
    encoder = Donut(str(donut_dirs[kind]), device="cpu")
    pages = torch.rand(3, 1, 90, 70)
    features = encoder.encode(pages)
    assert encoder.dim == 32 and features.shape == (3, 32) and torch.isfinite(features).all()
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(features, Donut(str(donut_dirs[kind]), device="cpu").encode(pages))  # a fresh load: same
    assert (features[0] - features[1]).abs().max() > 1e-4
    assert torch.allclose(features, encoder.encode(pages.expand(-1, 3, -1, -1)), atol=1e-6)  # grey == its RGB copy
    assert encoder.encode([pages[0], torch.rand(3, 50, 100)]).shape == (2, 32)  # pages of different sizes
    key = encoder.cache_key()
    assert json.dumps(key) and key["name"] == "donut" and key["device"] == "cpu" and key["dtype"] == "float32"
    assert Donut(str(donut_dirs[kind]), image_size=[96, 64], device="cpu").cache_key() != key


def test_donut_refuses_other_models_and_missing_paths(donut_dirs, layoutlmv3_dir, tmp_path):
    with pytest.raises(DataError, match="not Donut"):
        Donut(str(layoutlmv3_dir), device="cpu")
    with pytest.raises(DataError, match="config.json missing"):
        Donut(str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="encoder.path"):
        Donut(None)
    assert OmegaConf.is_missing(compose("encoder=donut").encoder, "path")
    cfg = compose("encoder=donut", f"encoder.path={donut_dirs['donut-swin']}", "device=cpu")
    assert instantiate(cfg.encoder).encode(torch.rand(1, 1, 64, 48)).shape == (1, 32)


# ---------------------------------------------------------------- LayoutLMv3

@pytest.fixture(scope="module")
def layoutlmv3_dir(tmp_path_factory):
    """A tiny random LayoutLMv3 with a byte-level tokenizer (one token per byte, no merges) and a 32 px processor."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (LayoutLMv3Config, LayoutLMv3ImageProcessor, LayoutLMv3Model, LayoutLMv3Processor,
                              LayoutLMv3Tokenizer)

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + sorted(ByteLevel.alphabet()))}
    tokenizer = LayoutLMv3Tokenizer(vocab=vocab, merges=[])
    processor = LayoutLMv3Processor(LayoutLMv3ImageProcessor(apply_ocr=False, size={"height": 32, "width": 32}),
                                    tokenizer)
    config = LayoutLMv3Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, input_size=32, patch_size=8, max_position_embeddings=130,
                              coordinate_size=4, shape_size=8, rel_pos_bins=32, max_rel_pos=64, rel_2d_pos_bins=32,
                              max_rel_2d_pos=64)
    directory = tmp_path_factory.mktemp("layoutlmv3")
    LayoutLMv3Model(config).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def test_words_and_boxes_split_lines_by_character_offsets():
    lines = [Line("ab cd", (100, 50, 200, 70)), Line("x", (0, 180, 10, 200))]
    words, boxes = words_and_boxes(lines, width=400, height=200)
    # "ab cd": 5 characters over 100 px, 20 px each: "ab" spans 0-2, "cd" 3-5
    assert words == ["ab", "cd", "x"]
    assert boxes == [[250, 250, 350, 350], [400, 250, 500, 350], [0, 900, 25, 1000]]
    assert words_and_boxes([Line("far", (-5, 0, 900, 10))], 400, 200)[1] == [[0, 0, 1000, 50]]  # clamped


def test_layoutlmv3_pixels_only(layoutlmv3_dir):
    encoder = LayoutLMv3(str(layoutlmv3_dir), apply_ocr=False, device="cpu")
    pages = torch.rand(3, 1, 80, 60)
    features = encoder.encode(pages)
    assert features.shape == (3, 32) and torch.isfinite(features).all()
    assert torch.equal(features, LayoutLMv3(str(layoutlmv3_dir), apply_ocr=False, device="cpu").encode(pages))
    assert (features[0] - features[1]).abs().max() > 1e-4
    assert "ocr" not in encoder.cache_key() and encoder.cache_key()["name"] == "layoutlmv3"


def test_layoutlmv3_reads_words_and_boxes_with_ocr(layoutlmv3_dir):
    # a smaller detector input than RapidOCR's default (min side 736): 4x faster on short test pages
    encoder = LayoutLMv3(str(layoutlmv3_dir), max_length=128, ocr_params={"Det": {"limit_side_len": 320}},
                         device="cpu")
    read, lines = [], encoder.ocr.lines
    encoder.ocr.lines = lambda page: read.append(lines(page)) or read[-1]  # record what encode() reads
    page, blank = render(LINES[:1]), torch.ones(1, 64, 640)  # a blank page: no words, pixels only
    features = encoder.encode([page, blank])
    words, boxes = words_and_boxes(read[0], page.shape[2], page.shape[1])
    assert squash(" ".join(words)) == squash(LINES[0]) and read[1] == []  # the words the model saw
    assert all(0 <= v <= 1000 for box in boxes for v in box) and boxes[0][0] < boxes[-1][0]  # left to right
    assert features.shape == (2, 32) and torch.isfinite(features).all()
    # the text changes the features: the same pixels without OCR give others, and the blank page matches its
    # pixels-only features only in so far as "no words" still adds the empty <s></s> text tokens
    pixels_only = LayoutLMv3(str(layoutlmv3_dir), apply_ocr=False, device="cpu").encode([page])
    assert (features[0] - pixels_only[0]).abs().max() > 1e-4
    key = encoder.cache_key()
    assert key["ocr"]["engine"] == "rapidocr" and key["ocr"]["params"]["Det.limit_side_len"] == "320"
    assert key["max_length"] == 128
    with pytest.raises(ConfigError, match="encoder.max_length"):
        LayoutLMv3(str(layoutlmv3_dir), max_length=512, device="cpu")  # the tiny model has 128 positions


def test_layoutlmv3_config(layoutlmv3_dir):
    assert OmegaConf.is_missing(compose("encoder=layoutlmv3").encoder, "path")
    cfg = compose("encoder=layoutlmv3", f"encoder.path={layoutlmv3_dir}", "encoder.apply_ocr=false", "device=cpu")
    encoder = instantiate(cfg.encoder)
    assert isinstance(encoder, LayoutLMv3) and encoder.encode(torch.rand(1, 3, 40, 40)).shape == (1, 32)


# ---------------------------------------------------------------- OCR text

@pytest.mark.parametrize("hypothesis, reference, expected", [
    ("abc", "abc", 0.0),
    ("kitten", "sitting", 3 / 7),  # k->s, e->i, +g
    ("ac", "abc", 1 / 3),          # one deletion
    ("abcd", "abc", 1 / 3),        # one insertion
    ("xyz", "abc", 1.0),           # three substitutions
    ("", "abcd", 1.0),
    ("ab", "", 2.0),               # empty reference: every character is an insertion
    ("", "", 0.0),
])
def test_character_error_rate_by_hand(hypothesis, reference, expected):
    assert character_error_rate(hypothesis, reference) == pytest.approx(expected)


@pytest.fixture(scope="module")
def ocr_text():
    from neurocl.encoders.text import MiniLM

    return OCRText(MiniLM(device="cpu"))


def test_ocr_reads_a_rendered_page_with_low_cer(ocr_text):
    page = render(LINES)
    start = time.perf_counter()
    text = ocr_text.read(page[None])[0]
    seconds = time.perf_counter() - start
    cer = character_error_rate(squash(text), squash("\n".join(LINES)))
    print(f"rendered page {tuple(page.shape[1:])}: CER {cer:.3f} in {seconds:.1f} s; read {text!r}")
    assert cer < 0.1


@pytest.mark.slow  # ~7-9 s of OCR on 2 busy cores
def test_ocr_reads_a_full_size_page(ocr_text):
    """A letter-size page at 96 dpi (1056 x 816, as dataset=iu_xray_pages renders them), 25 lines of text."""
    rng = np.random.default_rng(0)
    vocabulary = ("continual learning keeps prototypes of old classes while new experiences arrive the memory stores "
                  "one vector per class heart size normal lungs clear no acute cardiopulmonary disease").split()
    lines = [" ".join(rng.choice(vocabulary, 7)) for _ in range(25)]
    page = render(lines, size=18, width=816)  # 940 px of text
    page = torch.cat([page, torch.ones(1, 1056 - page.shape[1], 816)], dim=1)
    start = time.perf_counter()
    text = ocr_text.read(page[None])[0]
    cer = character_error_rate(squash(text), squash(" ".join(lines)))
    print(f"full page {tuple(page.shape[1:])}: CER {cer:.4f} in {time.perf_counter() - start:.1f} s")
    assert cer < 0.02


SKIMAGE_TEXT = ("Region-based segmentation Let us first determine markers of the coins and the background. These "
                "markers are pixels that we can label unambiguously as either object or background. Here, the "
                "markers are found at the two extreme parts of the histogram of grey values: >>> markers = "
                "np.zeros_like(coins)")


def test_ocr_text_encodes_real_pages(ocr_text):
    pages = [skimage_page(), render(LINES, width=384)]  # a photographed page and a rendered one
    start = time.perf_counter()
    texts = ocr_text.read(pages)
    cer = character_error_rate(squash(texts[0]), SKIMAGE_TEXT)
    print(f"skimage.data.page() {tuple(pages[0].shape[1:])}: CER {cer:.3f} (both pages read in "
          f"{time.perf_counter() - start:.1f} s); read {texts[0]!r}")
    assert "segmentation" in texts[0] and cer < 0.05  # misses ">>> " and reads "_" as a space
    features = ocr_text.text_encoder.encode(texts)  # encode() == the text encoder on read()
    assert features.shape == (2, 384) and torch.isfinite(features).all()
    assert torch.allclose(features.norm(dim=1), torch.ones(2), atol=1e-5)
    assert (features[0] - features[1]).abs().max() > 1e-3
    blank = ocr_text.encode(torch.ones(1, 3, 64, 64))  # an RGB page with nothing on it reads as ""
    assert torch.allclose(blank, ocr_text.text_encoder.encode([""]))


def test_ocr_text_cache_key_names_engine_models_and_text_encoder(ocr_text):
    key = ocr_text.cache_key()
    assert json.dumps(key)  # the feature cache hashes it as JSON
    assert key["name"] == "ocr_text" and key["device"] == "cpu" and key["dtype"] == "float32"
    assert key["ocr"]["engine"] == "rapidocr" and key["ocr"]["version"] == "3.10.0"
    assert set(key["ocr"]["models"]) == {"Det", "Cls", "Rec"} and key["ocr"]["params"]["Global.use_cls"] == "False"
    assert all(len(m["sha256"]) == 64 for m in key["ocr"]["models"].values())
    assert key["text_encoder"] == ocr_text.text_encoder.cache_key() and key["text_encoder"]["name"] == "minilm"
    with pytest.raises(DataError, match="Det model not found"):
        OCRText(ocr_text.text_encoder, ocr_params={"Det.model_path": "/nonexistent/det.onnx"})
    with pytest.raises(ConfigError, match="not a text encoder"):
        OCRText(object())


def test_ocr_text_config_instantiates_with_a_nested_text_encoder():
    encoder = instantiate(compose("encoder=ocr_text", "device=cpu", "+encoder.ocr_params.Global.use_cls=true").encoder)
    assert isinstance(encoder, OCRText) and encoder.accepts == ("page",) and encoder.dim == 384
    assert encoder.cache_key()["ocr"]["params"]["Global.use_cls"] == "True"  # the angle classifier back on
