import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from gauss import *
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
P = power(Xtr, 0.5), power(Xte, 0.5)
save(f'{ds} shared_maha pow0.5 rho=oas', protocol(lambda X, y: shared_maha(X, y, 'oas'), P[0], ytr, P[1], yte))
save(f'{ds} relative_maha raw rho=oas', protocol(lambda X, y: shared_maha(X, y, 'oas', relative=True), Xtr, ytr, Xte, yte))
for dim in [64, 256]:
    save(f'{ds} shared_maha raw pca{dim} rho=oas', protocol(lambda X, y: shared_maha(X, y, 'oas', dim=dim), Xtr, ytr, Xte, yte))
    save(f'{ds} shared_maha raw pca{dim}+resid1 rho=oas', protocol(lambda X, y: shared_maha(X, y, 'oas', dim=dim, resid=1.0), Xtr, ytr, Xte, yte))
for dim in [256]:
  for mode in ['maha', 'nll']:
    save(f'{ds} class_maha raw pca{dim} {mode} rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', mode, dim), Xtr, ytr, Xte, yte))
    save(f'{ds} class_maha pow0.5 pca{dim} {mode} rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', mode, dim), P[0], ytr, P[1], yte))
save(f'{ds} class_maha raw full maha rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', 'maha'), Xtr, ytr, Xte, yte))
save(f'{ds} class_maha pow0.5 full maha rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', 'maha'), P[0], ytr, P[1], yte))
save(f'{ds} class_maha pow0.5 full nll rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', 'nll'), P[0], ytr, P[1], yte))
save(f'{ds} FeCAM pow0.5 full corr rho=oas', protocol(lambda X, y: class_maha(X, y, 'oas', 'maha', corr=True), P[0], ytr, P[1], yte))
