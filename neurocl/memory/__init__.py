from neurocl.memory.avalanche import AvalancheMemory
from neurocl.memory.base import Memory, MemoryBase, Prediction
from neurocl.memory.knn import KNN
from neurocl.memory.ncm import NCM
from neurocl.memory.prototypes import PrototypeMemory
from neurocl.memory.ranpac import RanPAC
from neurocl.memory.slda import StreamingLDA

__all__ = ["AvalancheMemory", "KNN", "Memory", "MemoryBase", "NCM", "Prediction", "PrototypeMemory", "RanPAC", "StreamingLDA"]
