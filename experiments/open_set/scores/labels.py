import numpy as np, sys
sys.path.insert(0, '.')
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from common import D
from neurocl.data import FashionMNIST, Digits
s = FashionMNIST().load(); np.save(D + 'fm_ytr.npy', s.train.labels.numpy()); np.save(D + 'fm_yte.npy', s.test.labels.numpy())
print(len(s.train.labels), len(s.test.labels), s.train.labels[:10], s.test.labels[:10])
s = Digits().load(); np.save(D + 'dg_ytr.npy', s.train.labels.numpy()); np.save(D + 'dg_yte.npy', s.test.labels.numpy())
print(len(s.train.labels), len(s.test.labels))
try:
    from neurocl.data import IUXrayReports
    s = IUXrayReports().load(); np.save(D + 'iu_ytr.npy', s.train.labels.numpy()); np.save(D + 'iu_yte.npy', s.test.labels.numpy())
    print(len(s.train.labels), len(s.test.labels), s.class_names if hasattr(s,'class_names') else '', np.bincount(s.train.labels.numpy()))
except Exception as e: print('iu', e)
