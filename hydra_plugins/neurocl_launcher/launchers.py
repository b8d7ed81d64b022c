"""Launchers that wait for every job of a sweep, turn a job that ended without a result into a failed job, and
report each failure with its own message (neurocl.sweep.report: logged, and the summary of the jobs that
succeeded written and printed, because Hydra skips on_multirun_end once a job failed). The sweeper then ends
the sweep with the first failed job's own exception.

hydra-submitit-launcher 1.2.0's launch returns `[j.results()[0] for j in jobs]`: it raises at the first job
that died without a result (cancelled, timed out, killed) while its siblings still run, and the local ones are
killed as the sweep exits. `_WaitForAll.launch` is its BaseSubmititLauncher.launch up to `map_array`, then waits
for all jobs and collects every outcome. It is a copy: UPSTREAM_LAUNCH_SHA256 is the hash of the source it was
made from, and tests/test_sweeps.py fails when the installed plugin's launch differs from it.

neurocl is imported only inside `launch`: Hydra imports every plugin module in each Hydra application.
"""

import logging
import os
import time
from pathlib import Path
from typing import Any, List, Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher as HydraBasicLauncher
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# hashlib.sha256(inspect.getsource(BaseSubmititLauncher.launch).encode()).hexdigest() of hydra-submitit-launcher
# 1.2.0, the source `_WaitForAll.launch` was derived from.
UPSTREAM_LAUNCH_SHA256 = "546875669010f80d6ceede740e8bf2d18088cf5bcce2eb4794c735fa3dc2fc0e"


class BasicLauncher(HydraBasicLauncher):
    """Hydra's basic launcher (one job after the other, in this process; it already runs every job), reporting."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from neurocl.sweep import report

        returns = super().launch(job_overrides, initial_job_idx)
        return report(self.config, returns, initial_job_idx)


class _WaitForAll:
    """The launch of the submitit launchers below (a mixin: placed before hydra-submitit-launcher's class)."""

    _EXECUTOR: str
    params: dict
    config: Any

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # lazy import to ensure plugin discovery remains fast
        import submitit

        from neurocl.sweep import failed_return, report

        # -- hydra-submitit-launcher 1.2.0's BaseSubmititLauncher.launch, unchanged up to map_array
        assert self.config is not None

        num_jobs = len(job_overrides)
        assert num_jobs > 0
        params = self.params
        # build executor
        init_params = {"folder": self.params["submitit_folder"]}
        specific_init_keys = {"max_num_timeout"}

        init_params.update(**{f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys})
        init_keys = specific_init_keys | {"submitit_folder"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)

        # specify resources/parameters
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        params = {x if x in baseparams else f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x not in init_keys}
        executor.update_parameters(**params)

        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            mode = int(str(self.config.hydra.sweep.mode), 8)
            os.chmod(sweep_dir, mode=mode)

        job_params: List[Any] = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            lst = " ".join(filter_overrides(overrides))
            log.info(f"\t#{idx} : {lst}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))

        jobs = executor.map_array(self, *zip(*job_params))
        # -- from here on, ours (upstream: `return [j.results()[0] for j in jobs]`): wait for all, then collect
        # every outcome
        log.info("submitted %d jobs (%s); waiting for all of them", len(jobs), ", ".join(j.job_id for j in jobs))
        while not all(job.done() for job in jobs):
            time.sleep(1)
        returns = []
        for job, overrides in zip(jobs, job_overrides):
            try:
                returns.append(job.results()[0])
            except Exception as e:  # died without a result: cancelled, timed out, killed, or crashed outside the task
                returns.append(failed_return(overrides, e, task_name=str(self.config.hydra.job.name)))
        return report(self.config, returns, initial_job_idx)


class LocalLauncher(_WaitForAll, submitit_launcher.LocalLauncher):
    """hydra-submitit-launcher's LocalLauncher (hydra/launcher=submitit_local), waiting for every job."""


class SlurmLauncher(_WaitForAll, submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher (hydra/launcher=submitit_slurm), waiting for every job."""
