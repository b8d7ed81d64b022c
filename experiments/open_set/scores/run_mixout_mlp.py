import sys, os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mixout_mlp import *
from combo import combo
from gauss import shared_maha
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
save(f'{ds} mixout mlp256', protocol(lambda X, y: mixout_mlp(X, y), Xtr, ytr, Xte, yte, verbose=True))
save(f'{ds} combo mixout_mlp+shared_maha', protocol(combo([lambda X, y: mixout_mlp(X, y), lambda X, y: shared_maha(X, y, 'oas')]), Xtr, ytr, Xte, yte, verbose=True))
