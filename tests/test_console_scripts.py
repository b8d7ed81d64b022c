"""The console scripts of pyproject.toml (neurocl/cli.py): installed beside the interpreter, each behaving as its
`python -m neurocl.<module>`, and working from a directory other than the repository's.

They appear in the venv's bin folder with the editable install: pip install -e '.[dev]' --no-deps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = {"neurocl-run": "neurocl.run", "neurocl-infer": "neurocl.infer", "neurocl-evaluate": "neurocl.evaluate",
           "neurocl-analyze": "neurocl.analyze", "neurocl-encode": "neurocl.encode"}
BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
            "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: reinstall neurocl (pip install -e '.[dev]' --no-deps)")
    return str(path)


def test_every_script_is_installed_beside_the_interpreter():
    for name, module in SCRIPTS.items():
        path = Path(script(name))
        assert os.access(path, os.X_OK), path
        text = path.read_text()
        assert text.startswith("#!") and "from neurocl.cli import " in text, text


# --help where the module has one (Hydra's for the Hydra applications, argparse's for analyze); infer and evaluate
# have none: they name the missing checkpoint and exit 1, as `python -m` does.
CASES = [("neurocl-run", ["--help"], 0, "python -m neurocl.run"),
         ("neurocl-encode", ["--help"], 0, "neurocl.encode: fill the feature cache"),
         ("neurocl-analyze", ["--help"], 0, "--reproducibility"),
         ("neurocl-infer", [], 1, "error: invalid checkpoint=None: is required"),
         ("neurocl-infer", ["--help"], 1, "error: invalid --help=None: is not an option of neurocl.infer"),
         ("neurocl-evaluate", [], 1, "error: invalid checkpoint=None: is required")]


@pytest.mark.parametrize("name,args,status,says", CASES, ids=[f"{c[0]} {' '.join(c[1])}".strip() for c in CASES])
def test_a_script_says_what_python_m_says(tmp_path, env, name, args, status, says):
    as_script = subprocess.run([script(name), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
    as_module = subprocess.run([sys.executable, "-m", SCRIPTS[name], *args], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert as_script.returncode == status, as_script.stderr[-3000:]
    assert says in (as_script.stdout if status == 0 else as_script.stderr)
    assert (as_script.returncode, as_script.stdout, as_script.stderr) == \
        (as_module.returncode, as_module.stdout, as_module.stderr)
    if status:
        assert "Traceback" not in as_script.stderr


def test_neurocl_run_from_another_directory_finds_its_config_and_finishes(tmp_path, env):
    """Hydra's config_path="../conf" is found beside neurocl/run.py, not in the current directory."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = subprocess.run([script("neurocl-run"), "experiment=digits_quick", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"]["A_last"] > 0.5 and results["config"]["dataset"]["_target_"].endswith("Digits")
    assert list((tmp_path / "cache").iterdir())  # the feature cache of NEUROCL_CACHE_DIR
    assert not list(cwd.iterdir())  # nothing written where it was started


def test_a_sweep_of_submitit_jobs_and_its_analysis_from_another_directory(tmp_path, env):
    """The task function travels to submitit's job processes (pickled by value, as under `python -m`), and the
    sweep goes through the launcher plugin; neurocl-analyze then reads the sweep."""
    sweep = tmp_path / "sweep"
    out = subprocess.run([script("neurocl-run"), "--multirun", "hydra/launcher=local", "experiment=digits_quick",
                          "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 of 2 jobs with results." in (sweep / "summary.md").read_text()
    assert "hydra_plugins.neurocl_launcher.launchers.LocalLauncher" in (sweep / "multirun.yaml").read_text()
    report = subprocess.run([script("neurocl-analyze"), str(sweep), "--out", str(tmp_path / "report")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| `experiment=digits_quick` | 2 |" in report.stdout and (tmp_path / "report" / "results.md").exists()
