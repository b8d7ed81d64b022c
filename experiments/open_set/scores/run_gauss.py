import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from gauss import *
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
which = sys.argv[2] if len(sys.argv) > 2 else 'base'
Xtr, ytr, Xte, yte = load(ds)
if which == 'base':
    for rho in ['oas', 1e-3, 1e-2, 0.05, 0.1, 0.3]:
        save(f'{ds} shared_maha raw rho={rho}', protocol(lambda X, y: shared_maha(X, y, rho), Xtr, ytr, Xte, yte))
if which == 'pow':
    P = power(Xtr, 0.5), power(Xte, 0.5)
    for rho in ['oas', 1e-2, 0.1]:
        save(f'{ds} shared_maha pow0.5 rho={rho}', protocol(lambda X, y: shared_maha(X, y, rho), P[0], ytr, P[1], yte))
