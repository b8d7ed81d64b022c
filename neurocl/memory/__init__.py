from neurocl.memory.base import Memory, Prediction
from neurocl.memory.ncm import NCM
from neurocl.memory.prototypes import PrototypeMemory

__all__ = ["Memory", "NCM", "Prediction", "PrototypeMemory"]
