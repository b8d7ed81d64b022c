"""neurocl: continual-learning benchmarks with a neuromorphic prototype memory."""

__version__ = "0.1.0"
