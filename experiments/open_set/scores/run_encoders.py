"""Do better frozen features raise the open-set AUROC? The shipped score (shared Mahalanobis, OAS) and the
synthesised-unknown combo on the 6,000 / 2,000-image subset of experiments/encoders (its cached features)."""
import sys, os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from common import F, protocol, save
from combo import combo
from gauss import shared_maha
from mixout import mixout
from neurocl.data import FashionMNIST

SUBSET = {  # encoder -> (train, test) cache files of the subset (dataset.train_size=6000 dataset.test_size=2000)
    'lite0 64px': ('efficientnet_lite0-ae22ce0670ba70ef', 'efficientnet_lite0-d31a8c7c101a40d0'),
    'lite0 96px': ('efficientnet_lite0-ff7d8b397eb7e88a', 'efficientnet_lite0-d7ba0fd250fa30cf'),
    'lite1 96px': ('efficientnet_lite1-c693466e1714c523', 'efficientnet_lite1-61c0c440acb834b4'),
    'lite2 96px': ('efficientnet_lite2-ed2885621c8d8d37', 'efficientnet_lite2-f8b725b9e0660f28'),
}
s = FashionMNIST(train_size=6000, test_size=2000).load()
ytr, yte = s.train.labels.numpy(), s.test.labels.numpy()
for name, (tr, te) in SUBSET.items():
    Xtr = np.load(F + f'fashion_mnist-train-{tr}.npy'); Xte = np.load(F + f'fashion_mnist-test-{te}.npy')
    save(f'fm6k {name} shared_maha', protocol(lambda X, y: shared_maha(X, y, 'oas'), Xtr, ytr, Xte, yte))
    save(f'fm6k {name} combo mixout+shared_maha',
         protocol(combo([lambda X, y: mixout(X, y), lambda X, y: shared_maha(X, y, 'oas')]), Xtr, ytr, Xte, yte))
