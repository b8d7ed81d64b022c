"""Atomic writes: a crash mid-write never leaves a truncated results or cache file."""

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Every temporary file atomic_path makes ends so: a run or the feature cache removes only files of its own kind.
TMP_SUFFIX = ".neurocl.tmp"


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are for the whole group to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def why_unwritable(directory) -> str | None:
    """Why files could not be written into `directory` (creating it as needed), or None; nothing is created."""
    directory = Path(directory).expanduser().absolute()
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        return f"cannot be made: {existing} is a file"
    return None if os.access(existing, os.W_OK | os.X_OK) else f"cannot be written ({existing} is read-only)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj):
    """Strict JSON: tensors and arrays become lists, NaN and inf become null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_builtin(obj), indent=2, allow_nan=False) + "\n")


def to_builtin(obj):
    import numpy as np
    import torch

    if isinstance(obj, dict):
        return {str(k): to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_builtin(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.ndarray, np.generic)):
        return to_builtin(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj
