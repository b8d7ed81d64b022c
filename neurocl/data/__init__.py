from neurocl.data.base import ImageSplit, Splits
from neurocl.data.digits import Digits
from neurocl.data.fashion_mnist import FashionMNIST

__all__ = ["Digits", "FashionMNIST", "ImageSplit", "Splits"]
