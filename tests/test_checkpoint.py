"""Checkpoint and resume: a stream interrupted after an experience and resumed from its checkpoint ends exactly
where the uninterrupted stream ends, for every memory; checkpoints load without executing code."""

import pickle

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF, compose
from neurocl import checkpoint
from neurocl.driver import Features, StreamProgress, run_stream
from neurocl.errors import ConfigError, DataError
from neurocl.loggers import LoggerBase
from neurocl.runtime import seed_everything
from test_memory import clusters

MEMORIES = sorted(p.stem for p in (CONF / "memory").glob("*.yaml")) + ["prototypes_hnswlib"]
SMALL = {"prototypes_hnswlib": ["memory.backend=hnswlib"], "replay": ["memory.optimizer.lr=0.1", "memory.strategy.mem_size=20"],
         "ranpac": ["memory.projection_dim=64"], "icarl": ["memory.hidden=16"],
         "cope": ["memory.strategy.train_mb_size=8", "memory.hidden=16"], "prototypes_snn": []}
NETWORK = ["memory.strategy.train_epochs=1", "memory.strategy.train_mb_size=8"]


class Interrupted(Exception):
    pass


def stream_and_features(dim=16, classes=6):
    x, y = clusters(num_classes=classes, per_class=24, dim=dim, spread=0.3)
    xt, yt = clusters(num_classes=classes, per_class=8, dim=dim, spread=0.3, seed=1)
    scenario = instantiate(compose().scenario)
    return scenario.build(x, y, xt, yt, classes), Features(x, y), Features(xt, yt)


def make_memory(case, dim=16, classes=6):
    name = case.removesuffix("_hnswlib")
    avalanche = "strategy" in compose(f"memory={name}").memory
    cfg = compose(f"memory={name}", *(NETWORK if avalanche and name != "avalanche_slda" else []), *SMALL.get(case, []))
    return instantiate(cfg.memory, dim=dim, num_classes=classes)


def drive(memory, resume=None, after=None):
    stream, train, test = stream_and_features()
    return run_stream(stream, memory, train, test, 6, LoggerBase(), seed=0, observe_batch_size=16,
                      resume=resume, after_experience=after)


NOT_RESUMABLE = {"icarl", "cope"}  # their exemplar and prototype state is not saved


def test_memories_that_cannot_resume_say_so():
    assert {name for name in MEMORIES if not make_memory(name).resumable} == NOT_RESUMABLE


@pytest.mark.parametrize("name", sorted(set(MEMORIES) - NOT_RESUMABLE))
def test_a_resumed_stream_ends_exactly_where_the_uninterrupted_one_does(name, tmp_path):
    seed_everything(0)
    full = drive(make_memory(name))

    path = tmp_path / checkpoint.FILENAME

    def save_then_die(progress):  # a kill right after the first checkpoint
        checkpoint.save(path, {"progress": progress.state_dict(), "memory": memory.state_dict(),
                               "rng": checkpoint.rng_state()})
        raise Interrupted

    seed_everything(0)
    memory = make_memory(name)
    with pytest.raises(Interrupted):
        drive(memory, after=save_then_die)

    seed_everything(123)  # the resumed process starts from other RNG states; the checkpoint restores them
    saved = checkpoint.load(path)
    memory = make_memory(name)
    memory.load_state_dict(saved["memory"])
    checkpoint.set_rng_state(saved["rng"])
    resumed = drive(memory, resume=StreamProgress.from_state(saved["progress"]))
    assert saved["progress"]["done"] == 1
    np.testing.assert_array_equal(resumed["R"], full["R"])
    np.testing.assert_array_equal(resumed["per_class_accuracy"], full["per_class_accuracy"])


def test_without_restoring_the_memory_the_comparison_fails(tmp_path):
    """Positive control: resuming with a fresh memory (its state not loaded) gives another R."""
    seed_everything(0)
    full = drive(make_memory("prototypes"))
    path = tmp_path / checkpoint.FILENAME

    def save_then_die(progress):
        checkpoint.save(path, {"progress": progress.state_dict(), "rng": checkpoint.rng_state()})
        raise Interrupted

    with pytest.raises(Interrupted):
        drive(make_memory("prototypes"), after=save_then_die)
    saved = checkpoint.load(path)
    resumed = drive(make_memory("prototypes"), resume=StreamProgress.from_state(saved["progress"]))
    assert not np.array_equal(resumed["R"], full["R"])


def test_checkpoints_round_trip_arrays_and_load_without_code(tmp_path):
    state = {"a": np.arange(5, dtype=np.int32), "b": (1, [np.float16(2.5)]), "s": {3, 1}, "t": torch.ones(2)}
    checkpoint.save(tmp_path / "c.pt", state)
    back = checkpoint.load(tmp_path / "c.pt")
    assert back["a"].dtype == np.int32 and back["a"].tolist() == [0, 1, 2, 3, 4]
    assert back["b"] == (1, [2.5]) and back["s"] == {1, 3} and torch.equal(back["t"], torch.ones(2))

    class Payload:  # a pickle that would run code when loaded
        def __reduce__(self):
            return (print, ("executed",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "x": Payload()}, f)
    with pytest.raises(DataError, match="cannot be read safely"):
        checkpoint.load(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:100])
    with pytest.raises(DataError, match="cannot be read safely"):
        checkpoint.load(tmp_path / "cut.pt")
    with pytest.raises(DataError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_a_checkpoint_continues_only_its_own_config(tmp_path):
    saved = {"seed": 0, "memory": {"top_k": 10}, "resume": False, "logger": {"console": {}}}
    checkpoint.check_same_run(saved, {**saved, "resume": True, "logger": {"wandb": {}}}, tmp_path)
    with pytest.raises(ConfigError, match=r"memory.top_k: 10 in the checkpoint, 5 now"):
        checkpoint.check_same_run(saved, {**saved, "memory": {"top_k": 5}}, tmp_path)


def test_an_option_added_since_the_checkpoint_counts_at_its_default(tmp_path):
    target = {"_target_": "neurocl.snn.SpikingPrototypeMemory", "top_k": 10}
    saved = {"seed": 0, "memory": target}  # written before memory.reward_per existed
    checkpoint.check_same_run(saved, {"seed": 0, "memory": {**target, "reward_per": "query"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"memory.reward_per: '<absent>' in the checkpoint, 'neuron' now"):
        checkpoint.check_same_run(saved, {"seed": 0, "memory": {**target, "reward_per": "neuron"}}, tmp_path)
    with pytest.raises(ConfigError, match=r"memory.reward_per"):  # control: without a target nothing says the default
        checkpoint.check_same_run({"memory": {"top_k": 10}}, {"memory": {"top_k": 10, "reward_per": "query"}}, tmp_path)


KILL_ON_SECOND_CHECKPOINT = """
import os, signal, sys, torch
real_save, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):  # the second checkpoint: half-written, then SIGKILL (no cleanup runs)
    calls[0] += 1
    if calls[0] == 2:
        open(f, "wb").write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
import runpy
sys.argv = ["neurocl.run", *sys.argv[1:]]
runpy.run_module("neurocl.run", run_name="__main__")
"""
RUN_SETTINGS = {"prototypes": [], "prototypes_snn": [],
                "naive": ["memory.strategy.train_epochs=2", "memory.strategy.train_mb_size=16"]}


# prototypes_snn holds the store and the network; the others' resume is checked in process above (slow here: 90 s)
@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "prototypes_snn" else pytest.mark.slow)
                                  for n in sorted(RUN_SETTINGS)])
def test_a_run_killed_mid_write_resumes_to_the_same_results(name, tmp_path, fmnist_dir):
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache")}
    args = [f"dataset.root={fmnist_dir}", "encoder=pixels", f"memory={name}", *RUN_SETTINGS[name]]
    run = lambda code, directory, *extra: subprocess.run(
        [sys.executable, *code, *args, f"hydra.run.dir={directory}", *extra], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300)
    whole = run(["-m", "neurocl.run"], tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]

    killed = run(["-c", KILL_ON_SECOND_CHECKPOINT], tmp_path / "killed")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "killed" / "results.json").exists()
    assert list((tmp_path / "killed").glob(".checkpoint.pt.*.tmp")), "the kill left no half-written file"
    assert checkpoint.load(tmp_path / "killed" / checkpoint.FILENAME)["progress"]["done"] == 1

    again = run(["-m", "neurocl.run"], tmp_path / "killed")  # without resume=true: refused, nothing touched
    assert again.returncode != 0 and "resume=true" in again.stderr
    resumed = run(["-m", "neurocl.run"], tmp_path / "killed", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not list((tmp_path / "killed").glob(".*.tmp"))
    R = lambda d: json.loads((tmp_path / d / "results.json").read_text())["R"]
    assert R("killed") == R("whole")


def test_a_replay_buffer_left_behind_changes_the_resumed_stream(tmp_path, monkeypatch):
    """Positive control for the stored samples: resumed without its replay buffer, Replay ends elsewhere."""
    import neurocl.memory.avalanche as avalanche

    monkeypatch.setattr(avalanche, "restore_samples", lambda plugin, state, benchmark: None)
    with pytest.raises(AssertionError):
        test_a_resumed_stream_ends_exactly_where_the_uninterrupted_one_does("replay", tmp_path)
