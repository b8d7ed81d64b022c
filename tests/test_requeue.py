"""A SLURM job requeued mid-run restarts, resumes from its checkpoint, and ends with the uninterrupted run's R.

Two ways a job is requeued, one job of a 2-job sweep (hydra/launcher=slurm) each, while an uninterrupted run of
the same configuration runs beside them:

- `scontrol requeue`: what the scheduler does to a job pre-empted with PreemptMode=REQUEUE (or a node failure).
  SLURM sends SIGTERM (submitit ignores it), SIGKILL KillWait (5 s) later, and queues the job again;
- SIGUSR2: what SLURM sends before a job's time limit (submitit asks for it with --signal=USR2@90). submitit's
  handler calls the launcher's `checkpoint` (the same job again) and runs `scontrol requeue` itself.

Either way the job starts again with SLURM_RESTART_COUNT=1, and neurocl.run resumes from the checkpoint.pt in
its directory (run_dir.requeued). SLURM 22.05 holds a requeued job as PENDING (Reason=BeginTime); the test lifts
that with `scontrol update JobId=... StartTime=now` rather than wait for it. Needs scripts/slurm-local.sh's
cluster (skips without it; fails with NEUROCL_REQUIRE_SLURM=1, as .ci/run sets).
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np

from conftest import ROOT
from test_sweeps import ENV, slurm  # noqa: F401  (slurm: the fixture that skips or fails without the cluster)

# digits with raw pixels, slowed by the spiking memory's timesteps: about 4 s an experience alone on 2 cores (1.1 s
# at 500 steps, which left a CI machine finishing all 4 remaining experiences inside KillWait), so that a job
# requeued after its first checkpoint still has most of its stream ahead of it when SIGKILL comes 5 s later.
CONFIG = ["experiment=digits_quick", "memory=prototypes_snn", "memory.network=topk_currents", "memory.num_timesteps=2000"]


def squeue(name: str) -> dict:
    """Array task (0, 1) -> (job id as scontrol takes it, state) of the jobs named `name`."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True).stdout
    jobs = {}
    for line in out.splitlines():
        job, state = line.split()
        if re.fullmatch(r"\d+_\d+", job):
            jobs[int(job.split("_")[1])] = (job, state)
    return jobs


def wait_for(condition, seconds: float, what: str, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended while waiting for {what}: {process.stderr.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_requeued_slurm_jobs_resume_to_the_uninterrupted_results(tmp_path, slurm):
    start = time.perf_counter()
    name = f"neurocl-test-requeue-{os.getpid()}"
    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cache"
    common = [*CONFIG, f"paths.cache_dir={cache}"]
    sweep = subprocess.Popen([sys.executable, "-m", "neurocl.run", "--multirun", "hydra/launcher=slurm",
                              f"hydra.launcher.name={name}", f"hydra.sweep.dir={sweep_dir}", *common,
                              "+requeue_by=scontrol,signal"],  # a label: job 0 is requeued one way, job 1 the other
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reference = subprocess.Popen([sys.executable, "-m", "neurocl.run", *common, f"hydra.run.dir={tmp_path / 'ref'}"],
                                 cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        checkpoints = [sweep_dir / str(job) / "checkpoint.pt" for job in (0, 1)]
        wait_for(lambda: all(c.exists() for c in checkpoints), 120, "both jobs' first checkpoint", sweep)
        jobs = squeue(name)
        assert sorted(jobs) == [0, 1] and all(state == "RUNNING" for _, state in jobs.values()), jobs
        requeued_at = time.perf_counter()
        subprocess.run(["scontrol", "requeue", jobs[0][0]], check=True)
        subprocess.run(["scancel", "--signal=USR2", jobs[1][0]], check=True)
        restarted = set()
        def both_restarted():  # each job, once SLURM has it pending again: eligible now, not in two minutes
            for task, (job, state) in squeue(name).items():
                if task not in restarted and state == "PENDING":
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                    restarted.add(task)
            return restarted == {0, 1}
        wait_for(both_restarted, 60, "both jobs to be requeued (PENDING)", sweep)
        stdout, stderr = sweep.communicate(timeout=180)
        reference_out = reference.communicate(timeout=120)
    finally:
        for process in (sweep, reference):
            if process.poll() is None:
                process.kill()
        subprocess.run(["scancel", "-n", name])
    assert sweep.returncode == 0, stderr[-3000:]
    assert reference.returncode == 0, reference_out[1][-3000:]
    expected = json.loads((tmp_path / "ref" / "results.json").read_text())["R"]
    for job in (0, 1):
        run_log = (sweep_dir / str(job) / "run.log").read_text()
        resumed = re.findall(r"resuming \S+ after experience (\d+) of 5", run_log)
        assert len(resumed) == 1, run_log[-2000:]  # restarted once, and resumed from its checkpoint
        # it was interrupted mid-stream: the restarted job trained the experiences after its checkpoint itself
        assert int(resumed[0]) < 4 and run_log.count("experience 5/5:") == 1, \
            f"job {job} finished its stream before SIGKILL (KillWait 5 s after the requeue): this machine is fast " \
            "enough to need a larger memory.num_timesteps in CONFIG"
        results = json.loads((sweep_dir / str(job) / "results.json").read_text())
        np.testing.assert_array_equal(results["R"], expected)
        info = subprocess.run(["scontrol", "show", "job", jobs[job][0]], capture_output=True, text=True).stdout
        assert "Restarts=1" in info, info
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").glob(f"*_1/*_1_0_log.out"))
    assert "Caught signal SIGUSR2" in logs and f"Requeued job {jobs[1][0]}" in logs  # submitit's own path
    assert "2 of 2 jobs with results." in stdout
    print(f"2 requeued SLURM jobs resumed to the uninterrupted R: {time.perf_counter() - start:.1f} s "
          f"({time.perf_counter() - requeued_at:.1f} s from the requeue)")
