"""Fill the feature cache ahead of runs: in this process, as a submitit job array, or as one multi-task job.

    python -m neurocl.encode experiment=digits_quick                          # here, as neurocl.run would
    python -m neurocl.encode encoder=pixels shards=2 cluster=local            # 2 local jobs (submitit)
    python -m neurocl.encode shards=8 cluster=slurm slurm.partition=gpu slurm.gpus_per_node=1   # a SLURM job array
    python -m neurocl.encode tasks_per_node=4 cluster=slurm slurm.gpus_per_node=4  # 1 job, 4 torch.distributed ranks

The same conf/ and overrides as neurocl.run (dataset, encoder, conditions, debug, paths.cache_dir, device ...):
it writes exactly the entries a run of that configuration looks up (train, test and each test condition), with
the same keys, paths and metadata, so the run then hits the cache. Entries already sound in the cache are skipped.

- shards=N: N submitit jobs (`cluster=slurm`: one array; `local`: N processes here; `debug`: in this process,
  one after another). Job i encodes its contiguous rows of each split (FeatureCache.write_shard, aligned to the
  encoder's batches where possible) into a shard file beside the entry; when every job has ended, this process
  checks all shards (key, rows, shape, checksum, dtype, finite values) and assembles them (FeatureCache.assemble).
- tasks_per_node=N (with shards=1): one job of N tasks; torch.distributed is initialised from submitit's
  environment (neurocl/distributed.py: gloo on CPU, nccl on GPU), rank r encodes its rows, and rank 0 assembles
  once every rank has reported (an all_gather of each rank's outcome, which is also the barrier).
- A failed or missing shard stops the command with each failed shard's own error and its log; no cache entry
  is written. Shards that finished are kept and reused when the same command runs again.

Job logs and submitit's files: <hydra.run.dir>/.submitit/<job id>/ (hydra.run.dir: outputs/encode/<date>).
"""

import dataclasses
import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from neurocl.data.base import Split
from neurocl.data.corruptions import corrupt_condition
from neurocl.encoders import Ensemble, FeatureCache, check_accepts
from neurocl.encoders.base import Encoder
from neurocl.encoders.cache import ShardError, shard_bounds
from neurocl.errors import ConfigError, NeuroclError
from neurocl.run import build, load_splits
from neurocl.validate import validate_config

log = logging.getLogger("neurocl.encode")

CLUSTERS = ("local", "slurm", "debug")

# neurocl.encode's own options, over conf/config.yaml (the config neurocl.run composes, overrides and all).
OPTIONS = {
    "shards": 1,             # jobs, each encoding its contiguous share of every split; 1 with cluster=local: here
    "tasks_per_node": 1,     # > 1 (with shards=1): one job of that many torch.distributed tasks per node
    "nodes": 1,              # nodes of that job (SLURM)
    "cluster": "local",      # local | slurm | debug (submitit's executors; debug runs the jobs in this process)
    "cpus_per_task": 1,      # also the torch threads of each job
    "timeout_min": 60,
    "slurm": {               # SLURM only; the defaults run on scripts/slurm-local.sh's cluster
        "partition": "debug",
        "gpus_per_node": None,
        "mem_gb": 4,
        "array_parallelism": 8,
        "additional_parameters": {},  # more sbatch options, e.g. {account: myproject, qos: high}
    },
}

HELP = """\
neurocl.encode: fill the feature cache for a configuration (the same overrides as neurocl.run), in this process,
as a submitit job array (shards=N), or as one job of torch.distributed tasks (tasks_per_node=N).

== Examples ==

  python -m neurocl.encode experiment=digits_quick                         # here, as neurocl.run would
  python -m neurocl.encode encoder=pixels shards=2 cluster=local           # 2 local jobs
  python -m neurocl.encode shards=8 cluster=slurm slurm.partition=gpu slurm.gpus_per_node=1
  python -m neurocl.encode tasks_per_node=2 cluster=slurm                  # 1 SLURM job, 2 ranks (gloo on CPU)

== Options ==
  shards, tasks_per_node, nodes, cluster (local | slurm | debug), cpus_per_task, timeout_min,
  slurm.partition, slurm.gpus_per_node, slurm.mem_gb, slurm.array_parallelism, slurm.additional_parameters

Job logs: <hydra.run.dir>/.submitit/<job id>/. See the module docstring (neurocl/encode.py) and README.md.
"""

ConfigStore.instance().store(name="neurocl_encode", node={
    "defaults": ["config", "_self_"],
    **OPTIONS,
    "hydra": {"run": {"dir": "outputs/encode/${now:%Y-%m-%d_%H-%M-%S}"}, "help": {"template": HELP}},
})


@dataclasses.dataclass
class Plan:
    """What a configuration encodes: its splits under their cache names, the encoder, the cache."""
    dataset: str
    splits: dict[str, Split]  # "train", "test", "test-<condition>"
    encoder: Encoder
    cache: FeatureCache


def plan(cfg: DictConfig) -> Plan:
    """The splits neurocl.run encodes for `cfg` (its debug subset and test conditions included), by cache name."""
    splits = load_splits(cfg)
    encoder = build(cfg.encoder)
    check_accepts(encoder, splits.modality, f"dataset {splits.name}")
    named = {"train": splits.train, "test": splits.test}
    for name, condition in (cfg.get("conditions") or {}).items():
        named[f"test-{name}"] = corrupt_condition(splits.test, name, condition)
    return Plan(splits.name, named, encoder, FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled))


def check_options(cfg: DictConfig):
    for key in ("shards", "tasks_per_node", "nodes", "cpus_per_task"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, value, "must be a positive integer", f"set {key}=1")
    if cfg.cluster not in CLUSTERS:
        raise ConfigError("cluster", cfg.cluster, f"unknown cluster; one of {', '.join(CLUSTERS)}", "set cluster=local")
    if cfg.shards > 1 and cfg.tasks_per_node * cfg.nodes > 1:
        raise ConfigError("tasks_per_node", cfg.tasks_per_node, "shards=N (a job array) and tasks_per_node or "
                          "nodes above 1 (one job of torch.distributed ranks) do not combine",
                          "use either shards=N or tasks_per_node=N")
    if not cfg.cache.enabled or not cfg.paths.cache_dir:
        raise ConfigError("cache.enabled", cfg.cache.enabled, "neurocl.encode writes the feature cache",
                          "set cache.enabled=true and paths.cache_dir=<a directory every job can reach>")


# --------------------------------------------------------------------------------------------- in each job
def _job_setup(cfg: DictConfig):
    torch.set_num_threads(cfg.cpus_per_task)
    if not logging.getLogger().handlers:  # a submitit job: neurocl's INFO lines into the job's log
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")


def encode_shard(config: dict, index: int, count: int, names: list[str]) -> list[dict]:
    """Job i of a shards=N array: encode shard `index` of `count` of each split in `names` into its shard file."""
    cfg = OmegaConf.create(config)
    _job_setup(cfg)
    p = plan(cfg)
    return [p.cache.write_shard(p.encoder, p.splits[name], p.dataset, name, index, count) for name in names]


def encode_ranks(config: dict, names: list[str]) -> dict | None:
    """Each task of a tasks_per_node=N job: encode this rank's rows; rank 0 assembles once every rank reported."""
    import torch.distributed as dist

    from neurocl.distributed import process_group

    cfg = OmegaConf.create(config)
    _job_setup(cfg)
    with process_group(timeout_s=cfg.timeout_min * 60) as env:
        p = None
        try:
            p = plan(cfg)
            outcome = {"shards": [p.cache.write_shard(p.encoder, p.splits[name], p.dataset, name, env.rank,
                                                      env.world_size) for name in names]}
        except Exception as error:  # reported to every rank below, so none waits for a rank that is gone
            from submitit import JobEnvironment

            from neurocl.sweep import describe

            outcome = {"error": describe(error), "log": str(JobEnvironment().paths.stderr)}
            log.exception("rank %d failed", env.rank)
        outcomes = [None] * env.world_size
        dist.all_gather_object(outcomes, outcome)  # the barrier: every rank has written its shard, or failed
        failed = [(rank, o) for rank, o in enumerate(outcomes) if "error" in o]
        if failed:
            raise ShardError("; ".join(f"rank {rank} of {env.world_size} failed: {o['error']} (log: {o['log']})"
                                       for rank, o in failed))
        if env.rank != 0:
            return None
        return assemble_all(p, names, [o["shards"] for o in outcomes])


# --------------------------------------------------------------------------------------------- assembling
def assemble_all(p: Plan, names: list[str], shards: list[list[dict]], logs: list[str] | None = None) -> dict:
    """Check every shard of every split first, then assemble each entry: all of them, or none on an unsound shard.

    shards[i]: what shard i returned (write_shard of each split). The entry's key is the one the shards computed
    (their device and dtype); every shard must agree on it.
    """
    count = len(shards)
    log_of = lambda i: f" (log: {logs[i]})" if logs else ""
    keys, bounds, problems = {}, {}, []
    for name in names:
        reports = [next((r for r in shard if r["split"] == name), None) for shard in shards]
        missing = [i for i, r in enumerate(reports) if r is None]
        if missing:
            raise ShardError(f"shard {missing[0]} of {count} returned nothing for split {name}{log_of(missing[0])}")
        keys[name] = reports[0]["key"]
        differ = [i for i, r in enumerate(reports) if r["key"] != keys[name]]
        if differ:
            raise ShardError(f"the shards of {name} disagree on the cache key (shard 0: {keys[name]['encoder']}, "
                             f"shard {differ[0]}: {reports[differ[0]]['key']['encoder']}): give every job the same "
                             "device and data")
        split = p.splits[name]
        bounds[name] = shard_bounds(len(split), count, p.encoder.batch_size)
        here = p.cache.key(p.encoder, split, p.dataset, name)
        if here["data_fingerprint"] != keys[name]["data_fingerprint"]:
            raise ShardError(f"the shards of {name} encoded other data than this process sees (fingerprint "
                             f"{keys[name]['data_fingerprint']} vs {here['data_fingerprint']}): the dataset changed "
                             "or differs between machines")
        if here != keys[name]:
            log.warning("%s: the jobs keyed the entry for encoder %s; this process would key it %s. neurocl.run finds "
                        "it when it runs as the jobs did (same device).", name, keys[name]["encoder"], here["encoder"])
        problems += [f"{message}{log_of(i)}" for i, message in p.cache.check_shards(keys[name], bounds[name],
                                                                                     p.encoder.dim)]
    if problems:
        raise ShardError("unsound shards, no cache entry written: " + "; ".join(problems))
    entries = {}
    for name in names:
        path = p.cache.assemble(keys[name], bounds[name], p.encoder.dim)
        entries[name] = {"path": str(path), "rows": len(p.splits[name]), "dim": p.encoder.dim,
                         "shard_rows": [list(b) for b in bounds[name]],
                         "reused_shards": sum(r["reused"] for shard in shards for r in shard if r["split"] == name)}
    return entries


# --------------------------------------------------------------------------------------------- this process
def _executor(cfg: DictConfig, folder: Path):
    import submitit

    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cfg.cluster)
    slurm = cfg.slurm
    parameters = dict(name="neurocl-encode", timeout_min=cfg.timeout_min, cpus_per_task=cfg.cpus_per_task,
                      tasks_per_node=cfg.tasks_per_node, nodes=cfg.nodes, mem_gb=slurm.mem_gb,
                      slurm_partition=slurm.partition, slurm_array_parallelism=slurm.array_parallelism,
                      slurm_additional_parameters=OmegaConf.to_container(slurm.additional_parameters) or {})
    if slurm.gpus_per_node:
        parameters["gpus_per_node"] = slurm.gpus_per_node
    executor.update_parameters(**parameters)
    return executor


def _wait(jobs: list, what: str, debug: bool):
    """Block until every job has ended, a progress bar and a log line per job as they end."""
    if debug:  # submitit's DebugExecutor runs a job when its result is asked for
        return
    pending, start = dict(enumerate(jobs)), time.perf_counter()
    with tqdm(total=len(jobs), desc=what, unit="job", disable=None) as bar:  # None: terminals only
        while pending:
            for index, job in list(pending.items()):
                if job.done():
                    del pending[index]
                    bar.update(1)
                    log.info("%s %d of %d %s (job %s) after %.1f s", what.rstrip("s"), index, len(jobs),
                             "failed" if job.exception() else "finished", job.job_id, time.perf_counter() - start)
            if pending:
                time.sleep(0.5)


def _log_path(job, task: int = 0) -> str:
    from submitit.core.utils import JobPaths

    path = JobPaths(job.paths.folder, job_id=job.job_id, task_id=task).stderr
    return str(path) + ("" if path.exists() else " (not written: the job did not start)")


def encode(cfg: DictConfig, output_dir: Path) -> dict:
    """Encode every entry of `cfg` that the cache lacks; returns, per split, the entry's path and shape."""
    start = time.perf_counter()
    check_options(cfg)
    validate_config(cfg)
    if issubclass(get_class(cfg.encoder._target_), Ensemble):  # before any data or model is loaded
        raise ConfigError("encoder", cfg.encoder._target_, "neurocl.encode fills the cache of one encoder at a time, "
                          "and an ensemble keeps no entry of its own (its features are its members' entries)",
                          "encode each member with its own command (encoder=efficientnet_lite0, then "
                          "encoder=efficientnet_lite1, ...); the ensemble's runs then hit their entries")
    p = plan(cfg)
    names = [name for name, split in p.splits.items() if not p.cache.cached(p.encoder, split, p.dataset, name)]
    for name in p.splits:
        if name not in names:
            log.info("%s/%s: already in the feature cache", p.dataset, name)
    summary = {"dataset": p.dataset, "encoder": p.encoder.name, "encoded": names, "entries": {}}
    if names and cfg.cluster == "local" and cfg.shards == 1 and cfg.tasks_per_node * cfg.nodes == 1:
        for name in names:  # here, exactly as neurocl.run would encode it
            p.cache.features(p.encoder, p.splits[name], p.dataset, name)
        summary["entries"] = {name: {"path": str(p.cache.paths(p.cache.key(p.encoder, p.splits[name], p.dataset,
                                                                          name))[0]),
                                     "rows": len(p.splits[name]), "dim": p.encoder.dim} for name in names}
    elif names:
        summary["entries"] = _encode_in_jobs(cfg, p, names, output_dir)
    for name, entry in summary["entries"].items():
        shards = f" from {len(entry['shard_rows'])} shards" if "shard_rows" in entry else ""
        reused = f" ({entry['reused_shards']} reused)" if entry.get("reused_shards") else ""
        log.info("%s/%s: %d x %d features%s%s -> %s", p.dataset, name, entry["rows"], entry["dim"], shards, reused,
                 entry["path"])
    summary["wall_s"] = time.perf_counter() - start
    log.info("encoded %d of %d entries in %.1f s (cache %s)", len(names), len(p.splits), summary["wall_s"],
             p.cache.root)
    return summary


def _encode_in_jobs(cfg: DictConfig, p: Plan, names: list[str], output_dir: Path) -> dict:
    config = OmegaConf.to_container(cfg, resolve=True)
    executor = _executor(cfg, output_dir / ".submitit")
    distributed = cfg.tasks_per_node * cfg.nodes > 1
    if distributed:
        jobs = [executor.submit(encode_ranks, config, names)]
        log.info("submitted job %s (%s): %d tasks encode %s, rank 0 assembles", jobs[0].job_id, cfg.cluster,
                 cfg.tasks_per_node * cfg.nodes, ", ".join(names))
    else:
        count = cfg.shards
        jobs = executor.map_array(encode_shard, [config] * count, list(range(count)), [count] * count,
                                  [names] * count)
        log.info("submitted %d shard jobs (%s, %s): each encodes its rows of %s; logs in %s", count, cfg.cluster,
                 jobs[0].job_id.split("_")[0], ", ".join(names), output_dir / ".submitit")
    try:
        _wait(jobs, "shards" if not distributed else "jobs", cfg.cluster == "debug")
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    from neurocl.sweep import describe

    results, failures = [], []
    for index, job in enumerate(jobs):
        try:
            results.append(job.results() if distributed else job.result())
        except Exception as error:  # the job's own error, or submitit's account of a job that ended without one
            failures.append(f"shard {index} of {len(jobs)} (job {job.job_id}) failed: {describe(error)}\n"
                            f"    log: {_log_path(job)}" if not distributed else
                            f"job {job.job_id} failed: {describe(error)}\n    log: {_log_path(job)}")
    if failures:
        kept = "" if distributed or len(failures) == len(jobs) else (
            f"\nThe {len(jobs) - len(failures)} shard(s) that finished are kept beside the cache entries and "
            "reused when this command runs again.")
        raise ShardError(f"{len(failures)} of {len(jobs)} {'shards' if not distributed else 'jobs'} failed; "
                         f"no cache entry was written.\n  " + "\n  ".join(failures) + kept)
    if distributed:
        entries = results[0][0]  # rank 0 assembled
        for name in names:
            if not p.cache.cached(p.encoder, p.splits[name], p.dataset, name):
                log.warning("%s: rank 0 assembled %s, keyed as the job's ranks computed it", name,
                            entries[name]["path"])
        return entries
    return assemble_all(p, names, results, logs=[_log_path(job) for job in jobs])


@hydra.main(version_base="1.3", config_path="../conf", config_name="neurocl_encode")
def main(cfg: DictConfig) -> None:
    try:
        encode(cfg, Path(HydraConfig.get().runtime.output_dir))
    except NeuroclError as error:
        log.error("%s: %s", type(error).__name__, error)
        sys.exit(f"error: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
