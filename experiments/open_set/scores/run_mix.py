import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from mix import *
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
for M in [4, 16, 64]:
    for assign in ['raw', 'white']:
        save(f'{ds} tied_mixture M={M} assign={assign}', protocol(lambda X, y: tied_mixture(X, y, M, assign), Xtr, ytr, Xte, yte))
