import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from combo import *; from protos import proto_knn; from gauss import class_maha, shared_maha
ds = sys.argv[1] if len(sys.argv) > 1 else 'fm'
Xtr, ytr, Xte, yte = load(ds)
pk = lambda X, y: proto_knn(X, y, 100, 1)
cm = lambda X, y: class_maha(X, y, 'oas', 'maha', 256)
sm = lambda X, y: shared_maha(X, y, 'oas')
save(f'{ds} combo protoK100+class_maha256', protocol(combo([pk, cm]), Xtr, ytr, Xte, yte))
save(f'{ds} combo protoK100+shared_maha', protocol(combo([pk, sm]), Xtr, ytr, Xte, yte))
save(f'{ds} combo protoK100+class_maha256+shared_maha', protocol(combo([pk, cm, sm]), Xtr, ytr, Xte, yte))
