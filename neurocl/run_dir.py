"""A run directory holds one run: taken with a lock, and written only once the run is known to be its own.

Hydra would write `.hydra/` (config, overrides) into the directory before the run could look at it, so a run
refused there would overwrite the record of the run it refused to touch. conf/config.yaml therefore sets
`hydra.output_subdir: null` and the run writes `.hydra/` itself (`record_config`), after the checks; Hydra's
run.log handler opens its file only at the first message (`delay: true`), and a refused run logs none.
"""

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from neurocl import checkpoint
from neurocl.errors import RefusedResume, RefusedRunDirectory
from neurocl.io import TMP_SUFFIX, atomic_path

LOCK = ".neurocl.lock"
CONFIG_DIR = ".hydra"


class RunDirectoryBusy(RefusedRunDirectory):
    """Another live process is running in this run directory."""


@contextmanager
def claim(directory: Path):
    """Hold `directory` for this process: a second run into it is refused at once, naming the first.

    An flock, so the kernel releases it when the holder dies (kill -9, a node's job killed): no stale locks.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise RunDirectoryBusy(f"{directory} is in use by another run ({_describe(holder)}). Fix: wait for it "
                                   "to end or stop it, or run in another directory (hydra.run.dir=...).") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed that file between our open and our lock: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S"), "command": " ".join(["python -m neurocl.run", *sys.argv[1:]])}).encode())
    try:
        yield directory
    finally:
        path.unlink(missing_ok=True)  # before unlocking: nobody may lock a file that is about to vanish
        os.close(fd)


def _describe(holder: str) -> str:
    try:
        h = json.loads(holder)
        return f"pid {h['pid']} on {h['host']}, started {h['started']}: {h['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


def requeued(run_dir: Path) -> bool:
    """A SLURM job started again (pre-emption, time-out: submitit requeues the same command) that has a checkpoint."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0 and (run_dir / checkpoint.FILENAME).exists()


def prepare(output_dir: Path, resume: bool) -> dict | None:
    """Refuse to mix two runs in one directory; clear this directory's own orphaned temporaries (the run holds its
    lock, so they are left by a killed run of it). Returns the checkpoint to resume. Writes nothing when refused."""
    output_dir = Path(output_dir)
    path = output_dir / checkpoint.FILENAME
    if resume:
        saved = checkpoint.load(path)
    else:
        held = [name for name in ("results.json", checkpoint.FILENAME) if (output_dir / name).exists()]
        if held:
            raise RefusedResume("resume", False, f"{output_dir} already holds another run ({', '.join(held)})",
                              "set resume=true to continue that run, or run in a new directory (hydra.run.dir=...)")
        saved = None
    for leftover in output_dir.glob(f".*{TMP_SUFFIX}"):  # atomic_path's, orphaned by a kill
        leftover.unlink(missing_ok=True)
    return saved


def record_config(output_dir: Path, cfg) -> None:
    """Write `.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml` as Hydra would, atomically (nothing outside a
    Hydra app). Called for new runs only: a resumed run keeps the files of the run it continues, which name it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    folder = Path(output_dir) / CONFIG_DIR
    if not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hydra})),
                       ("overrides.yaml", hydra.overrides.task)):
        with atomic_path(folder / name) as tmp:
            tmp.write_text(OmegaConf.to_yaml(node))


def resume_hint(output_dir: Path, overrides: list[str]) -> str:
    """What to type to continue an interrupted run, or why it cannot be."""
    if not (Path(output_dir) / checkpoint.FILENAME).exists():
        return (f"no checkpoint was written in {output_dir} (interrupted before its first experience ended, or "
                "checkpoint=false): nothing to resume; run the same command again to start over")
    kept = [o for o in overrides if o.split("=", 1)[0] not in ("resume", "hydra.run.dir")]
    return "resume it with: python -m neurocl.run " + " ".join([*kept, "resume=true", f"hydra.run.dir={output_dir}"])
