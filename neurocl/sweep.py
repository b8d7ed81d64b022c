"""Sweeps: every job runs to its end, failures say their own message, and a summary table closes the sweep.

    python -m neurocl.run --multirun seed=0,1,2 memory=ncm,slda                       # one job after the other
    python -m neurocl.run --multirun hydra/launcher=local seed=0,1,2                    # all at once, 1 CPU each
    python -m neurocl.run --multirun hydra/launcher=slurm seed=0,1,2                    # a job array on SLURM
    python -m neurocl.run --multirun hydra/launcher=submitit_slurm hydra.launcher.partition=debug seed=0,1

`SweepCallback` is registered in conf/config.yaml (`hydra.callbacks`). With the launchers of the Hydra plugin
`hydra_plugins.neurocl_launcher` (hydra_plugins/neurocl_launcher/ in this repository, installed with neurocl),
a sweep

- ends with `summary.md` and `summary.csv` in the sweep directory (also printed): mean ± std over seeds of
  each group of overrides other than `seed` (the tables of `neurocl.analyze`), and every job without a
  results.json, with its directory and, when it failed in this sweep, its own error message;
- waits for every job before reporting, under the submitit launchers too: hydra-submitit-launcher 1.2.0
  returns `[j.results()[0] for j in jobs]`, which raises at the first job that died without a result
  (cancelled, timed out, killed) while its siblings still run, and the local ones are killed when the sweep
  exits. Jobs that end without a result become failed jobs with submitit's account of why (`failed_return`);
- when a job failed, logs each failure with its message, writes the summary of the jobs that succeeded (Hydra
  skips `on_multirun_end` then), and lets Hydra end the sweep with the first failed job's own exception and
  exit status 1 (`report`, called by the plugin's launchers);
- in each job: logs a failure into the job's own log (which otherwise only says that the submitit job
  completed), and limits torch to the launcher's `cpus_per_task` threads.

Which launcher: the presets `hydra/launcher=local` and `slurm` (conf/hydra/launcher/) extend the plugin's
`neurocl_submitit_local` and `neurocl_submitit_slurm`. A sweep whose launcher is Hydra's basic launcher (the
default, chosen in Hydra's own defaults list) or hydra-submitit-launcher's own `submitit_local` or
`submitit_slurm` runs with the plugin's subclass of that launcher instead: `on_multirun_start` sets
`hydra.launcher._target_` (the launcher's parameters stay as they are; multirun.yaml records the class used).
"""

import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from neurocl.errors import DataError, RefusedRunDirectory

log = logging.getLogger(__name__)

NO_RESULT = "no results.json and no error reported (still running, killed, or left from an earlier sweep)"


# --------------------------------------------------------------------------------------------- the summary
def job_dirs(sweep_dir) -> list[Path]:
    """Every job directory under a sweep (Hydra writes .hydra/overrides.yaml into each as the job starts)."""
    sweep_dir = Path(sweep_dir)
    found = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")
             if ".submitit" not in p.relative_to(sweep_dir).parts}
    natural = lambda path: [(0, int(t), "") if t.isdigit() else (1, 0, t)
                            for t in re.split(r"(\d+)", str(path.relative_to(sweep_dir))) if t]
    return sorted(found, key=natural)


def describe(error: BaseException) -> str:
    """One line: the job's own exception, or submitit's account of a job that ended without a result."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    text = str(error)
    if isinstance(error, FailedJobError):  # (before its base class) the remote traceback: its last exception line
        lines = [line.strip() for line in text.split("-" * 22)[1].splitlines() if line.strip()] if "-" * 22 in text else []
        exceptions = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b.*", line)]
        return exceptions[-1] if exceptions else (lines[-1] if lines else text.splitlines()[0])
    if isinstance(error, UncompletedJobError):  # "Job 12_0 (task: 0) with path ...\nhas not produced any output (state: CANCELLED by 0)"
        state = re.search(r"\(state: ([^)]*)\)", text)
        job = re.match(r"Job (\S+)", text)
        return (f"job {job.group(1) if job else '?'} ended without a result "
                f"(state: {state.group(1) if state else 'unknown'})")
    return f"{type(error).__name__}: {text}"


def summarize(sweep_dir, failures: Sequence[dict] = ()) -> str:
    """Write summary.md and summary.csv into the sweep directory and return the markdown.

    `failures`: {"num", "overrides", "message", "dir" (optional)} for jobs known to have failed in this sweep;
    their messages go beside their directories. Every job directory without results.json is listed, as is
    every failure whose job never got a directory (cancelled before it started)."""
    from neurocl import analyze

    sweep_dir = Path(sweep_dir)
    failures = [dict(f) for f in failures]
    runs, missing = [], []
    for directory in job_dirs(sweep_dir):
        overrides = OmegaConf.to_container(OmegaConf.load(directory / ".hydra" / "overrides.yaml"))
        failure = next((f for f in failures if list(f["overrides"]) == overrides
                        or (f.get("dir") and Path(f["dir"]).resolve() == directory.resolve())), None)
        if failure:
            failure["matched"] = True
        if (directory / "results.json").exists() and not failure:
            try:
                analyze.read_results(directory / "results.json")
                runs += analyze.load_runs([directory])
                continue
            except DataError as e:  # a results.json from another version, or cut short
                message = f"unreadable results.json: {e}"
        else:
            message = failure["message"] if failure else NO_RESULT
        missing.append({"job": str(directory.relative_to(sweep_dir)), "dir": str(directory),
                        "overrides": " ".join(filter_overrides(overrides)), "message": message})
    for failure in failures:
        if not failure.get("matched"):
            missing.append({"job": f"#{failure['num']}", "dir": "(none: it ended before Hydra made one)",
                            "overrides": " ".join(filter_overrides(failure["overrides"])),
                            "message": failure["message"]})

    total = len(runs) + len(missing)
    parts = [f"Sweep {sweep_dir}: {len(runs)} of {total} jobs with results"
             + (f", {len(missing)} failed or missing" if missing else "") + ". Mean ± std over seeds.\n"]
    if runs:
        shared = analyze.shared_overrides(runs)
        rows = analyze.table(analyze.drop_shared(runs, shared))
        parts.append((f"Every row also has: `{' '.join(shared)}`.\n\n" if shared else "") + analyze.tables(rows))
        analyze.write_csv(rows, sweep_dir / "summary.csv")
    else:
        analyze.write_text(sweep_dir / "summary.csv", "setting,seeds\n")
    if missing:
        cell = lambda text: " ".join(str(text).split()).replace("|", "\\|")
        lines = ["Failed or missing (no usable results.json):\n", "| job | directory | overrides | error |", "|---|---|---|---|"]
        lines += [f"| {m['job']} | {cell(m['dir'])} | `{cell(m['overrides'])}` | {cell(m['message'])} |" for m in missing]
        parts.append("\n".join(lines) + "\n")
    text = "\n".join(parts)
    analyze.write_text(sweep_dir / "summary.md", text)
    return text


# ------------------------------------------------------------------- what the plugin's launchers call
def failed_return(overrides: Sequence[str], error: BaseException, task_name: str | None = None) -> JobReturn:
    """What a job that ended without a result returns, so that the sweep reports it like any failed job."""
    ret = JobReturn(overrides=list(overrides), task_name=task_name, status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def report(config: DictConfig, returns: Sequence[JobReturn], initial_job_idx: int) -> Sequence[JobReturn]:
    """After all jobs of a batch ended: log every failure with its message and, if any failed, write and print
    the summary now (Hydra skips on_multirun_end when a job failed). The sweeper then raises the first one."""
    failures = []
    for i, ret in enumerate(returns):
        if ret.status != JobStatus.FAILED:
            continue
        error = ret._return_value
        message = describe(error) if isinstance(error, BaseException) else str(error)
        directory = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
        failures.append({"num": initial_job_idx + i, "overrides": list(ret.overrides or []),
                         "message": message, "dir": directory})
        log.error("job #%d failed (%s): %s", initial_job_idx + i, " ".join(filter_overrides(ret.overrides or [])),
                  message)
    if failures:
        print(summarize(config.hydra.sweep.dir, failures), flush=True)
        log.error("%d of %d jobs failed; summary of the others in %s", len(failures), len(returns),
                  Path(str(config.hydra.sweep.dir)) / "summary.md")
    return returns


# Hydra's and hydra-submitit-launcher's launcher classes -> their subclasses in the plugin, which wait for every
# job and report failures (hydra_plugins/neurocl_launcher/launchers.py).
PLUGIN = "hydra_plugins.neurocl_launcher.launchers"
OUR_LAUNCHERS = {
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher": f"{PLUGIN}.BasicLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": f"{PLUGIN}.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": f"{PLUGIN}.SlurmLauncher",
}


def choose_launcher(config: DictConfig) -> str | None:
    """Point `hydra.launcher._target_` at the plugin's subclass when it names a launcher in OUR_LAUNCHERS and
    Hydra knows the plugin; return the class the sweep will use (None: no launcher configured)."""
    target = OmegaConf.select(config, "hydra.launcher._target_", default=None)
    ours = OUR_LAUNCHERS.get(target)
    if ours is None:
        return target
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher

    if ours not in {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)}:
        log.warning("Hydra does not find the plugin hydra_plugins.neurocl_launcher (reinstall neurocl: "
                    "pip install -e .): the sweep runs with %s, which stops at the first job that ended without a "
                    "result and writes no summary when a job fails", target)
        return target
    with read_write(config.hydra.launcher), open_dict(config.hydra.launcher):
        config.hydra.launcher._target_ = ours
    log.debug("launcher %s runs as %s", target, ours)
    return ours


SUBMITIT_BASE = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher"


def _submitit_job(config: DictConfig) -> bool:
    """Whether the launcher of `config` runs each job in a submitit process (locally or on SLURM)."""
    target = OmegaConf.select(config, "hydra.launcher._target_", default=None)
    if not target:
        return False
    try:
        from hydra.utils import get_class

        classes = get_class(str(target)).__mro__
    except Exception:  # a class that cannot be imported here
        return "submitit" in str(target)
    # by name, not issubclass: Hydra's plugin scan executes again plugin modules already imported (new classes)
    return any(f"{c.__module__}.{c.__qualname__}" == SUBMITIT_BASE for c in classes)


# ------------------------------------------------------------------------------------------- the callback
class SweepCallback(Callback):
    """Registered in conf/config.yaml under hydra.callbacks; see the module docstring."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        choose_launcher(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        text = summarize(config.hydra.sweep.dir)
        print(text, flush=True)
        log.info("sweep summary: %s", Path(str(config.hydra.sweep.dir)) / "summary.md")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        threads = OmegaConf.select(config, "hydra.launcher.cpus_per_task", default=None)
        if threads and _submitit_job(config):
            import torch  # a job given n CPUs uses n threads, not every core of the node

            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            torch.set_num_threads(int(threads))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        error = job_return._return_value
        if job_return.status != JobStatus.FAILED or isinstance(error, RefusedRunDirectory):
            return  # a refused run's directory and log are another run's: Hydra's own message says it
        remote = _submitit_job(config)
        # In a submitit job the traceback goes into the job's own log (the sweep gets the exception back);
        # under the basic launcher Hydra prints it at the end of the sweep.
        log.error("job failed: %s", describe(error) if isinstance(error, BaseException) else error,
                  exc_info=(type(error), error, error.__traceback__) if remote and isinstance(error, BaseException) else None)
