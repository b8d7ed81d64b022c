"""Sweeps: the summary table, the launcher plugin (hydra_plugins/neurocl_launcher: found by Hydra, selected by the
presets, pinned to the hydra-submitit-launcher launch it was copied from), a failing job under the basic launcher
and under submitit_local, and sweeps on a real single-node SLURM.

The SLURM tests need the cluster of scripts/slurm-local.sh (`sudo scripts/slurm-local.sh start`; .ci/run
starts it). Without it they skip, saying why; with NEUROCL_REQUIRE_SLURM=1 (set by .ci/run) they fail instead.
"""

import functools
import inspect
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT
from neurocl import sweep

SETTLED = ("idle", "mix", "alloc", "comp")


@functools.cache  # sinfo takes 10 s to give up on a controller that is down: ask once
def slurm_missing() -> str | None:
    """Why the local SLURM cannot run a sweep, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo absent); start one with: sudo scripts/slurm-local.sh start"
    info = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%t"], capture_output=True, text=True, timeout=20)
    if info.returncode != 0 or not info.stdout.strip().startswith(SETTLED):
        return f"the local SLURM is down ({(info.stdout + info.stderr).strip() or 'no debug partition'}); " \
               "start it with: sudo scripts/slurm-local.sh start"
    acct = subprocess.run(["sacct", "-j", "1", "--parsable2", "-o", "JobID,State"], capture_output=True, timeout=20)
    if acct.returncode != 0:  # submitit learns job states from sacct; without it a cancelled job hangs the sweep
        return "sacct does not answer (accounting is off); scripts/slurm-local.sh start installs a stand-in"
    return None


@pytest.fixture
def slurm():
    reason = slurm_missing()
    if reason and os.environ.get("NEUROCL_REQUIRE_SLURM") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


def sweep_command(tmp_path, fmnist_dir, *overrides):
    return [sys.executable, "-m", "neurocl.run", "--multirun", f"dataset.root={fmnist_dir}", "encoder=pixels",
            f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def run_sweep(tmp_path, fmnist_dir, *overrides, timeout=150):
    return subprocess.run(sweep_command(tmp_path, fmnist_dir, *overrides), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------ the summary table
def fake_job(sweep_dir, name, overrides, a_last=None, forgetting=0.0):
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if a_last is not None:
        seed = int(next(o for o in overrides if o.startswith("seed="))[5:])
        (job / "results.json").write_text(json.dumps({
            "metrics": {"A_last": a_last, "forgetting_chaudhry": forgetting}, "memory_stats": {"memory_bytes": 2**20},
            "wall_s": 2.0, "config": {"seed": seed}}))
    return job


def test_summary_groups_seeds_and_lists_failed_jobs(tmp_path, capsys):
    root = tmp_path / "sweep"
    fake_job(root, "0", ["memory=ncm", "seed=0"], 0.8, 0.1)
    fake_job(root, "1", ["memory=ncm", "seed=1"], 0.6, 0.3)
    fake_job(root, "2", ["memory=slda", "seed=0"], 0.9)
    fake_job(root, "10", ["memory=slda", "seed=1"])  # started, no results: failed
    fake_job(root, "3", ["memory=knn", "seed=0"])  # no results and no error known
    (root / ".submitit" / "7_0" / ".hydra").mkdir(parents=True)  # submitit's folder is not a job
    failures = [{"num": 10, "overrides": ["memory=slda", "seed=1"], "message": "ConfigError: invalid x=1: no"},
                {"num": 11, "overrides": ["memory=lwf", "seed=0"], "message": "job 9_11 ended without a result"}]
    text = sweep.summarize(root, failures)
    assert text == (root / "summary.md").read_text()
    assert "3 of 6 jobs with results, 3 failed or missing" in text
    rows = [line for line in text.splitlines() if line.startswith("| `memory=")]
    assert rows[0].startswith("| `memory=slda` | 1 | 0.9000 |")  # best first
    assert rows[1].startswith("| `memory=ncm` | 2 | 0.7000 ± 0.1000 |")  # mean ± population std over seeds
    assert "| 0.2000 ± 0.1000 |" in rows[1]  # forgetting of the same two runs
    failed = text.split("Failed or missing")[1]
    assert f"| 10 | {root / '10'} | `memory=slda seed=1` | ConfigError: invalid x=1: no |" in failed
    assert f"| 3 | {root / '3'} | `memory=knn seed=0` | {sweep.NO_RESULT} |" in failed
    assert "| #11 | (none: it ended before Hydra made one) | `memory=lwf seed=0` | job 9_11" in failed
    assert failed.index("| 3 |") < failed.index("| 10 |")  # natural order of job numbers
    csv = (root / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("setting,seeds,A_last_mean,A_last_std") and len(csv) == 3
    ncm = dict(zip(csv[0].split(","), csv[2].split(",")))
    assert ncm["setting"] == "memory=ncm" and float(ncm["A_last_mean"]) == pytest.approx(0.7)
    assert float(ncm["A_last_std"]) == pytest.approx(0.1)

    # positive control: with every job's results present nothing is listed as failed, and the callback prints it
    for job in ("10", "3"):
        shutil.rmtree(root / job)
    (root / "4" / ".hydra").mkdir(parents=True)
    (root / "4" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["memory=knn", "seed=0"]))
    (root / "4" / "results.json").write_text("{\"metrics\": ")  # cut short: listed, not a crash
    sweep.SweepCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(root)}}}))
    printed = capsys.readouterr().out
    assert "3 of 4 jobs with results, 1 failed or missing" in printed and "unreadable results.json" in printed
    (root / "4" / "results.json").unlink()
    shutil.rmtree(root / "4")
    clean = sweep.summarize(root)
    assert "3 of 3 jobs with results." in clean and "Failed or missing" not in clean


def test_describe_names_the_jobs_own_error():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from neurocl.errors import ConfigError

    assert sweep.describe(ConfigError("memory.top_k", -1, "must be positive", "set 10")) == \
        "ConfigError: invalid memory.top_k=-1: must be positive. Fix: set 10"
    uncompleted = UncompletedJobError("Job 18_1 (task: 0) with path /x/18_1_0_result.pkl\n"
                                      "has not produced any output (state: CANCELLED by 0)\nError stream produced:")
    assert sweep.describe(uncompleted) == "job 18_1 ended without a result (state: CANCELLED by 0)"
    failed = FailedJobError("Job (task=0) failed during processing with trace:\n----------------------\n"
                            "Traceback (most recent call last):\n  File \"x.py\", line 1\nMemoryError: out of memory\n"
                            "----------------------\nYou can check full logs")
    assert sweep.describe(failed) == "MemoryError: out of memory"


# ------------------------------------------------------------------------------------ the launcher plugin
PLUGIN = "hydra_plugins.neurocl_launcher.launchers"


def test_our_launch_is_derived_from_the_installed_plugins_launch():
    """hydra_plugins/neurocl_launcher/launchers.py's launch is a copy of hydra-submitit-launcher's
    BaseSubmititLauncher.launch up to map_array: a plugin whose launch changed must be looked at first."""
    import hashlib
    from importlib.metadata import version

    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    from hydra_plugins.neurocl_launcher import launchers

    source = inspect.getsource(BaseSubmititLauncher.launch)
    assert hashlib.sha256(source.encode()).hexdigest() == launchers.UPSTREAM_LAUNCH_SHA256, (
        f"hydra-submitit-launcher {version('hydra-submitit-launcher')}'s BaseSubmititLauncher.launch is not the one "
        "hydra_plugins/neurocl_launcher/launchers.py was derived from (1.2.0). Re-derive _WaitForAll.launch from the "
        "installed launch (keep its wait-for-all ending), then set UPSTREAM_LAUNCH_SHA256 to the new hash.")
    assert source.rstrip().endswith("jobs = executor.map_array(self, *zip(*job_params))\n"
                                    "        return [j.results()[0] for j in jobs]")
    # each job is called with the job_params tuple that our launch builds
    assert list(inspect.signature(BaseSubmititLauncher.__call__).parameters) == \
        ["self", "sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"]
    ours = inspect.getsource(launchers._WaitForAll.launch)
    assert "jobs = executor.map_array(self, *zip(*job_params))" in ours
    assert ours.rstrip().endswith("return report(self.config, returns, initial_job_idx)")


def test_hydra_finds_the_plugin_and_the_presets_select_it():
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
    from hydra_plugins.neurocl_launcher import launchers

    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)}
    assert {f"{PLUGIN}.BasicLauncher", f"{PLUGIN}.LocalLauncher", f"{PLUGIN}.SlurmLauncher"} <= found
    # (by name: Hydra's plugin scan executes again a plugin module that was already imported, making new classes)
    bases = lambda cls: {f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__}
    upstream = submitit_launcher.__name__
    assert f"{upstream}.LocalLauncher" in bases(launchers.LocalLauncher)
    assert f"{upstream}.SlurmLauncher" in bases(launchers.SlurmLauncher)
    assert "hydra._internal.core_plugins.basic_launcher.BasicLauncher" in bases(launchers.BasicLauncher)
    assert ConfigStore.instance().load("hydra/launcher/neurocl_submitit_slurm.yaml").provider == "neurocl_launcher"

    def launcher(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True).hydra.launcher

    local, slurm = launcher("hydra/launcher=local"), launcher("hydra/launcher=slurm")
    assert local._target_ == f"{PLUGIN}.LocalLauncher" and local.cpus_per_task == 1
    assert slurm._target_ == f"{PLUGIN}.SlurmLauncher" and slurm.partition == "debug" and slurm.max_num_timeout == 3
    upstream = launcher("hydra/launcher=submitit_slurm")
    assert set(launcher("hydra/launcher=neurocl_submitit_slurm")) == set(upstream)  # every parameter of the plugin's
    assert launcher("hydra/launcher=neurocl_basic")._target_ == f"{PLUGIN}.BasicLauncher"

    # the launchers that Hydra's defaults and hydra-submitit-launcher name run as ours; any other stays as it is
    for choice, ours in (("basic", "BasicLauncher"), ("submitit_local", "LocalLauncher"),
                         ("submitit_slurm", "SlurmLauncher")):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            config = compose("config", overrides=[f"hydra/launcher={choice}"], return_hydra_config=True)
        before = OmegaConf.to_container(config.hydra.launcher)
        assert sweep._submitit_job(config) == (choice != "basic")  # a job's torch threads follow cpus_per_task
        assert sweep.choose_launcher(config) == f"{PLUGIN}.{ours}" == config.hydra.launcher._target_
        assert sweep._submitit_job(config) == (choice != "basic")
        assert {k: v for k, v in OmegaConf.to_container(config.hydra.launcher).items() if k != "_target_"} == \
            {k: v for k, v in before.items() if k != "_target_"}
    other = OmegaConf.create({"hydra": {"launcher": {"_target_": "hydra_plugins.elsewhere.Launcher"}}})
    assert sweep.choose_launcher(other) == "hydra_plugins.elsewhere.Launcher" == other.hydra.launcher._target_
    assert not hasattr(sweep, "install_launchers")  # nothing replaces a class's launch any more


# ------------------------------------------------------------------------------------ Hydra's basic launcher
def test_basic_sweep_with_a_bad_value_runs_its_sibling_and_writes_the_summary(tmp_path, fmnist_dir):
    out = run_sweep(tmp_path, fmnist_dir, "memory.top_k=-1,5")
    root = tmp_path / "sweep"
    assert out.returncode != 0, out.stdout
    message = "invalid memory.top_k=-1: must be above 0"
    assert f"ConfigError: {message}" in out.stderr
    assert json.loads((root / "1" / "results.json").read_text())["metrics"]["A_last"] == 1.0
    assert OmegaConf.load(root / "multirun.yaml").hydra.launcher._target_ == f"{PLUGIN}.BasicLauncher"
    summary = (root / "summary.md").read_text()
    assert summary in out.stdout and "1 of 2 jobs with results, 1 failed or missing" in summary
    assert message in summary.split("Failed or missing")[1]
    assert "job #0 failed (" in out.stdout + out.stderr


# ------------------------------------------------------------------------------------ submitit_local
def test_local_sweep_with_a_bad_value_keeps_its_sibling_and_names_the_error(tmp_path, fmnist_dir):
    start = time.perf_counter()
    out = run_sweep(tmp_path, fmnist_dir, "hydra/launcher=submitit_local", "memory.top_k=-1,5")
    root = tmp_path / "sweep"
    assert out.returncode != 0, out.stdout
    message = "invalid memory.top_k=-1: must be above 0"
    assert f"neurocl.errors.ConfigError: {message}" in out.stderr  # the job's own error ends the sweep
    assert "TypeError" not in out.stderr + out.stdout
    assert json.loads((root / "1" / "results.json").read_text())["metrics"]["A_last"] == 1.0  # the sibling finished
    assert not (root / "0" / "results.json").exists()
    summary = (root / "summary.md").read_text()
    assert summary in out.stdout and "1 of 2 jobs with results, 1 failed or missing" in summary
    assert "memory.top_k=5` | 1 | 1.0000 |" in summary
    assert f"| 0 | {root / '0'} | `" in summary and message in summary.split("Failed or missing")[1]
    job_log = (root / "0" / "run.log").read_text()
    assert "job failed: ConfigError: " + message in job_log  # the job's own log says it failed
    assert OmegaConf.load(root / "multirun.yaml").hydra.launcher._target_ == f"{PLUGIN}.LocalLauncher"
    print(f"submitit_local sweep with a bad value: {time.perf_counter() - start:.1f} s")


# ------------------------------------------------------------------------------------ SLURM
def test_slurm_sweep_runs_both_jobs_and_prints_the_summary(tmp_path, fmnist_dir, slurm):
    start = time.perf_counter()
    out = run_sweep(tmp_path, fmnist_dir, "hydra/launcher=slurm", "memory=ncm", "seed=0,1")
    assert out.returncode == 0, out.stderr[-3000:]
    root = tmp_path / "sweep"
    for job in ("0", "1"):
        results = json.loads((root / job / "results.json").read_text())
        assert results["metrics"]["A_last"] == 1.0 and results["config"]["seed"] == int(job)
    assert list((root / ".submitit").glob("*_1/*_log.out"))  # it went through SLURM, as an array
    assert OmegaConf.load(root / "multirun.yaml").hydra.launcher._target_ == f"{PLUGIN}.SlurmLauncher"
    summary = (root / "summary.md").read_text()
    assert summary in out.stdout and "2 of 2 jobs with results." in summary
    assert f"| `dataset.root={tmp_path / 'fmnist'} encoder=pixels paths.cache_dir={tmp_path / 'cache'} memory=ncm` " \
           "| 2 | 1.0000 ± 0.0000 |" in summary
    header, row = (line.split(",") for line in (root / "summary.csv").read_text().splitlines())
    assert dict(zip(header, row))["A_last_mean"] == "1.0" and dict(zip(header, row))["seeds"] == "2"
    print(f"2-job SLURM sweep: {time.perf_counter() - start:.1f} s")


def test_slurm_cancelled_job_is_an_error_not_a_hang(tmp_path, fmnist_dir, slurm):
    name = f"neurocl-test-cancel-{os.getpid()}"
    command = sweep_command(tmp_path, fmnist_dir, "hydra/launcher=neurocl_submitit_slurm", "hydra.launcher.partition=debug",
                            f"hydra.launcher.name={name}", "memory=ncm", "seed=0")
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        job = ""
        while not job and time.monotonic() < deadline and process.poll() is None:
            job = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout.strip()
            time.sleep(0.3)
        assert job, "the job never reached the queue"
        subprocess.run(["scancel", job], check=True)
        cancelled = time.monotonic()
        stdout, stderr = process.communicate(timeout=90)  # the pitfall: without a working sacct this hangs
    finally:
        if process.poll() is None:
            process.kill()
            subprocess.run(["scancel", "-n", name])
    assert process.returncode != 0
    assert "UncompletedJobError" in stderr and "CANCELLED" in stderr
    assert f"job #0 failed (" in stdout and "ended without a result (state: CANCELLED" in stdout
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "0 of 1 jobs with results, 1 failed or missing" in summary and "CANCELLED" in summary
    print(f"cancelled SLURM job reported {time.monotonic() - cancelled:.1f} s after scancel")
