import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from protos import *
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
for K in [int(v) for v in sys.argv[2].split(',')]:
    for norm in [None, 'spread', 'sqrt']:
        for k in ([1, 5] if norm is None else [1]):
            save(f'{ds} proto_knn K={K} k={k} norm={norm}', protocol(lambda X, y: proto_knn(X, y, K, k, norm), Xtr, ytr, Xte, yte))
