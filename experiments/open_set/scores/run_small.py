import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from protos import proto_knn; from gauss import class_maha, shared_maha; from knn import knn_samples; from combo import combo
from common import *
ds = sys.argv[1]
Xtr, ytr, Xte, yte = load(ds)
d = Xtr.shape[1]
save(f'{ds} shared_maha raw rho=oas (baseline)', protocol(lambda X, y: shared_maha(X, y, 'oas'), Xtr, ytr, Xte, yte))
save(f'{ds} class_maha pca256 maha rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', 'maha', min(256, d)), Xtr, ytr, Xte, yte))
for k in [1, 10]:
    save(f'{ds} knn_samples raw k={k}', protocol(lambda X, y: knn_samples(X, y, 'raw', (k,), k), Xtr, ytr, Xte, yte))
for K in [25, 100]:
    save(f'{ds} proto_knn K={K} k=1 norm=None', protocol(lambda X, y: proto_knn(X, y, K, 1), Xtr, ytr, Xte, yte))
save(f'{ds} combo protoK100+class_maha256', protocol(combo([lambda X, y: proto_knn(X, y, 100, 1), lambda X, y: class_maha(X, y, 'oas', 'maha', min(256, d))]), Xtr, ytr, Xte, yte))
