from neurocl.data.base import ImageText, Split, Splits
from neurocl.data.bioasq import BioASQ
from neurocl.data.digits import Digits
from neurocl.data.fashion_mnist import FashionMNIST
from neurocl.data.images import DicomFolder, read_image
from neurocl.data.iu_xray import IUXrayPages, IUXrayReports
from neurocl.data.medmnist import MedMNIST
from neurocl.data.mimic_cxr import MIMICCXR
from neurocl.data.pmc import PMCPapers
from neurocl.data.vqa_rad import VQARAD

__all__ = ["BioASQ", "DicomFolder", "Digits", "FashionMNIST", "IUXrayPages", "IUXrayReports", "ImageText", "MIMICCXR",
           "MedMNIST", "PMCPapers", "Split", "Splits", "VQARAD", "read_image"]
