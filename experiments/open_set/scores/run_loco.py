import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from protos import proto_knn
from common import *
ds = sys.argv[1]
Xtr, ytr, Xte, yte = load(ds)
ch = Chooser(lambda X, y, K: proto_knn(X, y, K, 1), [25, 100, 400])
r = protocol(ch, Xtr, ytr, Xte, yte, verbose=True); r['chosen'] = [(b, {k: round(v, 4) for k, v in res.items()}) for b, res in ch.log]
save(f'{ds} proto_knn k=1 K by LOCO from [25,100,400]', r)
