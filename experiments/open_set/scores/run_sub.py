import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from subspace import *
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
for r in [int(v) for v in sys.argv[2].split(',')]:
    for mode in ['resid', 'resid_raw', 'ppca']:
        save(f'{ds} class_subspace r={r} {mode}', protocol(lambda X, y: class_subspace(X, y, r, mode), Xtr, ytr, Xte, yte))
