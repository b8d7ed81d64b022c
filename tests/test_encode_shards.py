"""Sharded feature encoding (neurocl.encode): a submitit job array, or one job of torch.distributed ranks, whose
assembled cache entries are bit for bit those of one process, and that neurocl.run then hits.

The SLURM tests need scripts/slurm-local.sh's cluster and skip without it (fail with NEUROCL_REQUIRE_SLURM=1, as
.ci/run sets), like tests/test_sweeps.py, whose fixture and helpers they reuse. Encoder: pixels, on the tiny
Fashion-MNIST of conftest (80 train, 30 test images).
"""

import json
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT
from test_sweeps import ENV, slurm  # noqa: F401  (slurm: the fixture that skips or fails without the cluster)
from neurocl import encode
from neurocl.encoders.cache import LOCK, ShardError, shard_bounds
from neurocl.errors import ConfigError


def config(cache_dir, fmnist_dir, *overrides):
    """neurocl.encode's composed config (conf/config.yaml and its own options), as the command line would give it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("neurocl_encode", overrides=[f"dataset.root={fmnist_dir}", "encoder=pixels",
                                                    f"paths.cache_dir={cache_dir}", *overrides])


def entry_files(cache_dir) -> dict:
    """Every entry or shard file of a cache directory (not its lock), name -> bytes."""
    return {path.name: path.read_bytes() for path in sorted(cache_dir.iterdir()) if path.name != LOCK}


def one_process(tmp_path, fmnist_dir, *overrides) -> dict:
    """The reference: the entries neurocl.encode writes in one process (those neurocl.run writes itself)."""
    cache = tmp_path / "reference-cache"
    summary = encode.encode(config(cache, fmnist_dir, *overrides), tmp_path / "reference-out")
    assert not any("shard_rows" in entry for entry in summary["entries"].values())  # no jobs were involved
    return entry_files(cache)


def test_shard_bounds_cover_every_row_and_keep_whole_batches():
    assert shard_bounds(80, 2) == [(0, 40), (40, 80)]
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(1, 3) == [(0, 0), (0, 0), (0, 1)]  # more shards than rows: empty shards, still covering
    # enough rows for whole batches: shards start at batch boundaries, so they encode the batches one process does
    assert shard_bounds(1000, 3, batch_size=64) == [(0, 320), (320, 640), (640, 1000)]
    assert shard_bounds(100, 3, batch_size=64) == [(0, 33), (33, 66), (66, 100)]  # fewer batches than shards
    for n, count, batch in ((0, 2, 8), (7, 7, 2), (4097, 4, 1024), (999, 5, None)):
        bounds = shard_bounds(n, count, batch)
        assert len(bounds) == count and bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] and a[0] <= a[1] for a, b in zip(bounds, bounds[1:]))


def test_slurm_two_shards_assemble_the_one_process_entries_and_the_run_hits_them(tmp_path, fmnist_dir, slurm):
    start = time.perf_counter()
    reference = one_process(tmp_path, fmnist_dir, "conditions=corrupted")
    assert len(reference) == 8  # train, test and two test conditions: .npy and .json each
    cache, out = tmp_path / "cache", tmp_path / "encode"
    common = [f"dataset.root={fmnist_dir}", "encoder=pixels", f"paths.cache_dir={cache}", "conditions=corrupted"]
    done = subprocess.run([sys.executable, "-m", "neurocl.encode", *common, "shards=2", "cluster=slurm",
                           f"hydra.run.dir={out}"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 2 shard jobs (slurm" in done.stdout and "encoded 4 of 4 entries" in done.stdout
    assert "fashion_mnist/train: 80 x 784 features from 2 shards" in done.stdout
    assert entry_files(cache) == reference  # bit for bit, metadata included; no shard file left behind
    jobs = sorted(p.name for p in (out / ".submitit").glob("*_*") if p.is_dir())
    assert len(jobs) == 2 and jobs[0].endswith("_0") and jobs[1] == jobs[0][:-1] + "1"  # one SLURM array, 2 tasks
    assert "rows 40-80" in (out / ".submitit" / jobs[1] / f"{jobs[1]}_0_log.err").read_text()  # its own slice

    run = subprocess.run([sys.executable, "-m", "neurocl.run", *common, "memory=ncm",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["feature_cache"] == {"hits": 4, "misses": 0}
    assert "feature cache hit" in run.stdout + run.stderr
    assert entry_files(cache) == reference  # the run read the entries, and changed nothing
    print(f"2 shards on SLURM, assembled and hit by a run: {time.perf_counter() - start:.1f} s")


def test_local_two_shards_without_slurm(tmp_path, fmnist_dir):
    start = time.perf_counter()
    reference = one_process(tmp_path, fmnist_dir)
    cache = tmp_path / "cache"
    summary = encode.encode(config(cache, fmnist_dir, "shards=2", "cluster=local"), tmp_path / "out")
    assert summary["entries"]["train"]["shard_rows"] == [[0, 40], [40, 80]]
    assert summary["entries"]["test"]["shard_rows"] == [[0, 15], [15, 30]]
    assert entry_files(cache) == reference
    assert len(list((tmp_path / "out" / ".submitit").glob("*/*_log.err"))) == 2  # two local jobs, a log each
    again = encode.encode(config(cache, fmnist_dir, "shards=2", "cluster=local"), tmp_path / "out2")
    assert again["encoded"] == [] and not (tmp_path / "out2").exists()  # already cached: nothing submitted
    print(f"2 local shards: {time.perf_counter() - start:.1f} s")


def test_an_ensemble_is_refused_with_its_members_named(tmp_path, fmnist_dir):
    with pytest.raises(ConfigError, match="encode each member"):
        encode.encode(config(tmp_path / "cache", fmnist_dir, "encoder=ensemble"), tmp_path / "out")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing written


FAULTY_ENCODER = '''
from neurocl.encoders import Pixels


class NaNPixels(Pixels):
    """Pixels, but NaN features for class 9 (its bright row 21): the last rows of each split, so shard 1 of 2 only."""

    def encode(self, images):
        features = super().encode(images)
        features[images[:, 0, 21, 0] == 1.0] = float("nan")
        return features
'''


def test_a_failing_shard_names_itself_and_its_log_and_writes_no_entry(tmp_path, fmnist_dir, monkeypatch):
    start = time.perf_counter()
    reference = one_process(tmp_path, fmnist_dir)
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "neurocl_test_faults.py").write_text(FAULTY_ENCODER)
    monkeypatch.syspath_prepend(str(tmp_path / "faults"))  # this process builds the encoder too
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "faults"))  # and the jobs, which inherit the environment
    cache = tmp_path / "cache"
    faulty = config(cache, fmnist_dir, "shards=2", "cluster=local", "encoder._target_=neurocl_test_faults.NaNPixels")
    with pytest.raises(ShardError) as failed:
        encode.encode(faulty, tmp_path / "out")
    message = str(failed.value)
    assert message.startswith("1 of 2 shards failed; no cache entry was written.")
    assert "shard 1 of 2 (job " in message and "shard 0 of 2" not in message
    assert "DataError: fashion_mnist/train rows 40-80 (shard 1 of 2" in message and "NaN or inf in 8 of 40" in message
    log = message.split("log: ")[1].split("\n")[0]
    assert "DataError" in open(log).read()  # the log it names is the failed job's, with its traceback
    assert "kept beside the cache entries and reused" in message
    left = sorted(p.name for p in cache.iterdir() if p.name != LOCK)
    assert left and all(".shard-0-of-2." in name for name in left)  # shard 0's files only: no entry, no shard 1

    # positive control: the same command with a sound encoder succeeds, reusing the shard that had finished
    summary = encode.encode(config(cache, fmnist_dir, "shards=2", "cluster=local"), tmp_path / "out-fixed")
    assert summary["entries"]["train"]["reused_shards"] == 1 and summary["entries"]["test"]["reused_shards"] == 1
    assert entry_files(cache) == reference
    print(f"failing shard and its positive control: {time.perf_counter() - start:.1f} s")


def test_slurm_two_tasks_torch_distributed_rank0_assembles(tmp_path, fmnist_dir, slurm):
    cpus = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%c"], capture_output=True, text=True).stdout.split()
    if not cpus or int(cpus[0].rstrip("+")) < 2:
        pytest.skip(f"the local SLURM node has {cpus[0] if cpus else 'no'} CPUs; 2 tasks need 2")
    start = time.perf_counter()
    reference = one_process(tmp_path, fmnist_dir)
    cache, out = tmp_path / "cache", tmp_path / "out"
    summary = encode.encode(config(cache, fmnist_dir, "tasks_per_node=2", "cluster=slurm"), out)
    assert summary["entries"]["train"]["shard_rows"] == [[0, 40], [40, 80]]
    assert entry_files(cache) == reference
    (job,) = (p for p in (out / ".submitit").iterdir() if p.is_dir())  # one SLURM job of two tasks
    logs = [(job / f"{job.name}_{task}_log.err").read_text() for task in (0, 1)]
    for rank, text in enumerate(logs):
        assert f"torch.distributed: rank {rank} of 2 (local rank {rank}), gloo" in text
    assert "assembled" in logs[0] and "assembled" not in logs[1]  # rank 0 assembles, after both reported
    assert "rows 40-80" in logs[1] and "rows 0-40" in logs[0]
    print(f"1 SLURM job, 2 torch.distributed tasks: {time.perf_counter() - start:.1f} s")
