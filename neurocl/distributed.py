"""torch.distributed inside a submitit job, without torchrun: one process per task, ranks from submitit.

    from neurocl.distributed import process_group
    with process_group() as env:                   # in a function submitit runs with tasks_per_node > 1
        ...  env.rank, env.world_size, env.local_rank; torch.distributed collectives work

SLURM (or submitit's LocalExecutor) starts one process per task; submitit.JobEnvironment knows each one's global
rank, local rank and the number of tasks, and submitit.helpers.TorchDistributedEnvironment (submitit 1.5.4) adds
MASTER_ADDR (the job's first node) and MASTER_PORT (MASTER_PORT if set, else one drawn from the job id, the same
in every task). Those are exported as torch's env:// variables, and the process group starts with gloo on CPU
or nccl when the task sees a GPU (each task on GPU local_rank, modulo the GPUs it sees: with --gpus-per-task
SLURM already gives each task its own, and CUDA_VISIBLE_DEVICES is left as SLURM set it).
"""

import datetime
import logging
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass
class DistributedEnv:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    backend: str
    device: torch.device


def init_from_submitit(backend: str | None = None, timeout_s: float = 1800) -> DistributedEnv:
    """Initialise the default process group from the running submitit job's environment.

    backend: None picks nccl when this task sees a CUDA GPU, else gloo. timeout_s bounds how long a collective
    waits for a task that died (then the others fail too, instead of holding the allocation).
    """
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)  # "cuda" (the encoders' device=auto) now means this task's GPU
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    log.info("torch.distributed: rank %d of %d (local rank %d), %s, master %s:%d", env.rank, env.world_size,
             env.local_rank, backend, env.master_addr, env.master_port)
    return DistributedEnv(env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, backend,
                          device)


@contextmanager
def process_group(backend: str | None = None, timeout_s: float = 1800):
    """init_from_submitit(), and the process group destroyed on the way out (also on an error)."""
    env = init_from_submitit(backend, timeout_s)
    try:
        yield env
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def submitit_tasks() -> int:
    """How many tasks the running submitit job has; 1 outside a submitit job."""
    from submitit import JobEnvironment

    try:
        return JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return 1


@contextmanager
def tasks_of_this_job():
    """A process group over the tasks of the running submitit job when it has several (hydra.launcher.tasks_per_node
    > 1), yielding its DistributedEnv; None otherwise."""
    if submitit_tasks() < 2:
        yield None
        return
    import avalanche.training  # noqa: F401  imported by a task other than 0 once a group exists, Avalanche refuses
    with process_group() as env:
        yield env
