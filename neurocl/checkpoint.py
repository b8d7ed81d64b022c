"""Checkpoints: all a run needs to continue after its last completed experience.

One file, `checkpoint.pt` in the run directory, replaced atomically after each experience. It is read with
`torch.load(weights_only=True)`: loading never executes code from the file. numpy arrays, which that loader
refuses, travel as tensors inside a marker dict and come back as arrays.
"""

import inspect
import random
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_object

from neurocl.errors import DataError, RefusedResume
from neurocl.io import atomic_path

FORMAT = 1
FILENAME = "checkpoint.pt"
# Keys that may differ between a run and its resumption: where it logs, whether it checkpoints, where caches are.
RESUMABLE_CHANGES = ("resume", "checkpoint", "logger", "paths", "cache")


def encode(obj):
    """Arrays become {"__ndarray__": tensor}, numpy scalars Python scalars, sets sorted lists: all weights_only-safe."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(encode(v) for v in obj)
    if isinstance(obj, set):
        return {"__set__": sorted(obj)}
    return obj


def decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        if set(obj) == {"__set__"}:
            return set(obj["__set__"])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode(v) for v in obj)
    return obj


def save(path: Path, state: dict):
    """Write atomically: a kill or a full disk mid-write leaves the previous checkpoint in place."""
    with atomic_path(path) as tmp:
        torch.save(encode({"format": FORMAT, **state}), tmp)


RESUME_FIX = ("point hydra.run.dir at the directory of the run to resume (it holds checkpoint.pt), or run without "
              "resume=true")


def load(path: Path, missing_fix: str = RESUME_FIX) -> dict:
    """The checkpoint at `path`; `missing_fix` is what the error says to do when there is none."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no checkpoint at {path}. Fix: {missing_fix}.")
    try:
        state = decode(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # truncated, not a torch file, or holding objects that would need code to load
        raise DataError(f"checkpoint {path} cannot be read safely ({type(e).__name__}: {str(e)[:200]}). "
                        "Fix: delete it and rerun the run from the start.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(f"checkpoint {path} is not a neurocl checkpoint of format {FORMAT}. "
                        "Fix: delete it and rerun the run from the start.")
    return state


def check_same_run(saved: dict, current: dict, path: Path):
    """A checkpoint continues only the run it came from: every setting outside RESUMABLE_CHANGES must agree."""
    differ = sorted(_differences(
        {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES},
        {k: v for k, v in current.items() if k not in RESUMABLE_CHANGES}))
    if differ:
        shown = ", ".join(f"{key}: {a!r} in the checkpoint, {b!r} now" for key, a, b in differ[:5])
        raise RefusedResume("resume", True, f"{path} comes from another config ({shown})",
                          "resume with the overrides of the original run (its .hydra/overrides.yaml), "
                          "or start a new run in another hydra.run.dir")


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        target = a.get("_target_") if a.get("_target_") == b.get("_target_") else None
        for key in sorted(set(a) | set(b), key=str):
            if key not in a and target is not None and _is_default(target, key, b[key]):
                continue  # an option added since the checkpoint was written, at its default: what the run did then
            yield from _differences(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b


def _is_default(target: str, key: str, value) -> bool:
    """Whether `value` is the default of option `key` of the class or function `target`."""
    try:
        parameter = inspect.signature(get_object(target)).parameters.get(key)
    except (ImportError, AttributeError, ValueError, TypeError):
        return False
    return parameter is not None and parameter.default is not inspect.Parameter.empty and parameter.default == value


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
