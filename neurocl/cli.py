"""The console scripts of pyproject.toml's [project.scripts]: `neurocl-run ARGS` is `python -m neurocl.run ARGS`.

Each script runs its module as `python -m` does (runpy.run_module with run_name="__main__" and alter_sys=True),
so that the module's own `if __name__ == "__main__":` block is what runs: the error handling of neurocl.infer
and neurocl.evaluate (`error: ...` on stderr, exit status 1), argparse's usage line of neurocl.analyze, and, for
the Hydra applications neurocl.run and neurocl.encode, Hydra's config_path="../conf" found beside the module
file. (A script calling the decorated `neurocl.run.main` itself would not find it from another directory: Hydra
then resolves config_path against the module's package, `pkg://conf`, which is not an installed package.)
Like `python -m`, the current directory comes first on sys.path (e.g. for a `_target_` in a module there).
"""

import os
import runpy
import sys


def _as_main(module: str) -> None:
    cwd = os.getcwd()
    if not sys.path or sys.path[0] != cwd:
        sys.path.insert(0, cwd)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def run() -> None:
    """neurocl-run: python -m neurocl.run"""
    _as_main("neurocl.run")


def infer() -> None:
    """neurocl-infer: python -m neurocl.infer"""
    _as_main("neurocl.infer")


def evaluate() -> None:
    """neurocl-evaluate: python -m neurocl.evaluate"""
    _as_main("neurocl.evaluate")


def analyze() -> None:
    """neurocl-analyze: python -m neurocl.analyze"""
    _as_main("neurocl.analyze")


def encode() -> None:
    """neurocl-encode: python -m neurocl.encode"""
    _as_main("neurocl.encode")
