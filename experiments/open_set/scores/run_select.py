"""Per experience, choose the score family by leave-one-class-out AUROC on the seen training data."""
import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from common import *
from protos import proto_knn; from gauss import class_maha, shared_maha; from combo import combo
ds = sys.argv[1]
Xtr, ytr, Xte, yte = load(ds); d = Xtr.shape[1]
fam = {'shared_maha': lambda X, y: shared_maha(X, y, 'oas'),
       'class_maha256': lambda X, y: class_maha(X, y, 'oas', 'maha', min(256, d)),
       'proto_knn100': lambda X, y: proto_knn(X, y, 100, 1)}
fam['combo'] = combo([fam['proto_knn100'], fam['class_maha256']])
ch = Chooser(lambda X, y, g: fam[g](X, y), list(fam))
r = protocol(ch, Xtr, ytr, Xte, yte, verbose=True); r['chosen'] = [(b, {k: round(v, 4) for k, v in res.items()}) for b, res in ch.log]
save(f'{ds} family chosen by LOCO per experience', r)
