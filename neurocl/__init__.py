"""neurocl: continual-learning benchmarks with a neuromorphic prototype memory."""

__version__ = "0.1.0"

import warnings

# Norse compiles with torch.jit.script, which torch deprecates: not the user's concern, and the first thing
# every command printed. Only that warning is filtered.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
