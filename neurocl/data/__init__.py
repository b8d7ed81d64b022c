from neurocl.data.base import ImageText, Split, Splits
from neurocl.data.bioasq import BioASQ
from neurocl.data.digits import Digits
from neurocl.data.fashion_mnist import FashionMNIST
from neurocl.data.iu_xray import IUXrayPages, IUXrayReports
from neurocl.data.pmc import PMCPapers

__all__ = ["BioASQ", "Digits", "FashionMNIST", "IUXrayPages", "IUXrayReports", "ImageText", "PMCPapers", "Split",
           "Splits"]
