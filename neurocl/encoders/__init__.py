from neurocl.encoders.base import Encoder, check_accepts, encode_split
from neurocl.encoders.cache import FeatureCache
from neurocl.encoders.documents import Donut, LayoutLMv3
from neurocl.encoders.efficientnet_lite import EfficientNetLite
from neurocl.encoders.ensemble import Ensemble
from neurocl.encoders.image_text import ImageTextFusion
from neurocl.encoders.ocr_text import OCRText, character_error_rate
from neurocl.encoders.pixels import Pixels
from neurocl.encoders.text import HFText, MiniLM
from neurocl.encoders.timm_model import TimmEncoder

__all__ = ["Donut", "EfficientNetLite", "Encoder", "Ensemble", "FeatureCache", "HFText", "ImageTextFusion", "LayoutLMv3", "MiniLM", "OCRText",
           "Pixels", "TimmEncoder", "character_error_rate", "check_accepts", "encode_split"]
