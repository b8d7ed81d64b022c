from neurocl.encoders.base import Encoder, encode_split
from neurocl.encoders.cache import FeatureCache
from neurocl.encoders.efficientnet_lite import EfficientNetLite
from neurocl.encoders.pixels import Pixels

__all__ = ["EfficientNetLite", "Encoder", "FeatureCache", "Pixels", "encode_split"]
