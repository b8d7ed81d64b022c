"""The spiking memory: neuron steps (neurons.py), synapses (synapses.py), plasticity rules (plasticity.py)
and the memory over the prototype store (memory.py), all on Norse's functional steps."""

from neurocl.snn.memory import SpikingPrototypeMemory

__all__ = ["SpikingPrototypeMemory"]
