from neurocl.encoders.base import Encoder, check_accepts, encode_split
from neurocl.encoders.cache import FeatureCache
from neurocl.encoders.efficientnet_lite import EfficientNetLite
from neurocl.encoders.pixels import Pixels
from neurocl.encoders.text import HFText, MiniLM

__all__ = ["EfficientNetLite", "Encoder", "FeatureCache", "HFText", "MiniLM", "Pixels", "check_accepts",
           "encode_split"]
