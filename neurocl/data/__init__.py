from neurocl.data.base import ImageText, Split, Splits
from neurocl.data.digits import Digits
from neurocl.data.fashion_mnist import FashionMNIST
from neurocl.data.iu_xray import IUXrayReports

__all__ = ["Digits", "FashionMNIST", "IUXrayReports", "ImageText", "Split", "Splits"]
