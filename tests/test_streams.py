"""Domain-incremental and online (i-Blurry) streams: their sequences checked by hand on tiny streams, each with a
control that a wrong split fails; A_auc against a hand-computed curve; an online run resumed mid-stream."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, compose
from neurocl import metrics
from neurocl.data.base import Split
from neurocl.data.corruptions import rotate
from neurocl.driver import Features, StreamProgress, run_stream
from neurocl.errors import ConfigError
from neurocl.loggers import LoggerBase
from neurocl.memory import NCM
from neurocl.run import execute
from neurocl.scenarios import DomainIncremental, OnlineBlurry, iblurry_split


# -- i-Blurry ------------------------------------------------------------------------------------------------

def check_iblurry(tasks, home, labels, order, num_tasks, disjoint_fraction, blurry_fraction):
    """The i-Blurry-N-M counts, from its definition: every sample once; a disjoint class only in its home
    task; a blurry class keeps (100 - M)% at home, and its other samples lie in any task."""
    all_rows = torch.cat(tasks)
    assert sorted(all_rows.tolist()) == list(range(len(labels))), "every sample exactly once"
    n_disjoint = round(len(order) * disjoint_fraction / 100)
    disjoint, blurry = order[:n_disjoint], order[n_disjoint:]
    for t, rows in enumerate(tasks):
        counts = torch.bincount(labels[rows], minlength=len(order))
        for c in disjoint:
            expected = int((labels == c).sum()) if c in home[t] else 0
            assert counts[c] == expected, f"disjoint class {c} in task {t}"
        for c in blurry:
            if c in home[t]:
                kept = int((labels == c).sum()) - round(int((labels == c).sum()) * blurry_fraction / 100)
                assert counts[c] >= kept, f"blurry class {c} keeps {kept} samples at home, task {t} has {counts[c]}"
    scattered = sum(round(int((labels == c).sum()) * blurry_fraction / 100) for c in blurry)
    sizes = [len(rows) for rows in tasks]
    home_sizes = [sum(int((labels == c).sum()) for c in home[t]) - sum(
        round(int((labels == c).sum()) * blurry_fraction / 100) for c in home[t] if c in blurry)
        for t in range(num_tasks)]
    chunks = [s - h for s, h in zip(sizes, home_sizes)]
    assert sum(chunks) == scattered and max(chunks) - min(chunks) <= 1, "the scattered pool is cut into equal chunks"


def test_iblurry_split_by_hand():
    # 4 classes x 10 samples, 2 tasks, i-Blurry-50-20: classes 2, 0 disjoint (one per task), 3, 1 blurry.
    labels = torch.arange(4).repeat_interleave(10)
    order = [2, 0, 3, 1]
    tasks, home = iblurry_split(labels, order, 2, 50, 20, torch.Generator().manual_seed(0))
    assert home == [[2, 3], [0, 1]]
    counts = [torch.bincount(labels[rows], minlength=4).tolist() for rows in tasks]
    # Task 0: all 10 of class 2, 8 of class 3 at home; task 1: all of class 0, 8 of class 1. The 2 + 2 scattered
    # samples of classes 3 and 1 are cut into two chunks of 2, one per task.
    assert counts[0][2] == 10 and counts[0][0] == 0 and counts[1][0] == 10 and counts[1][2] == 0
    assert counts[0][3] >= 8 and counts[1][1] >= 8
    assert counts[0][1] + counts[0][3] == 10 and counts[1][1] + counts[1][3] == 10
    assert len(tasks[0]) == len(tasks[1]) == 20
    check_iblurry(tasks, home, labels, order, 2, 50, 20)
    # Within a task the samples are shuffled, not grouped by class.
    assert labels[tasks[0]].tolist() != sorted(labels[tasks[0]].tolist())


def test_iblurry_check_fails_on_a_wrong_split():
    """Positive control: a split that leaks a disjoint class, or keeps every blurry sample at home, is caught."""
    labels = torch.arange(4).repeat_interleave(10)
    order = [2, 0, 3, 1]
    tasks, home = iblurry_split(labels, order, 2, 50, 20, torch.Generator().manual_seed(0))
    leaked = [torch.cat([tasks[0], tasks[1][labels[tasks[1]] == 0][:1]]),
              tasks[1][~torch.isin(torch.arange(len(tasks[1])), (labels[tasks[1]] == 0).nonzero().flatten()[:1])]]
    with pytest.raises(AssertionError, match="disjoint class 0"):
        check_iblurry(leaked, home, labels, order, 2, 50, 20)
    too_blurry, _ = iblurry_split(labels, order, 2, 50, 60, torch.Generator().manual_seed(0))  # M = 60, not 20
    with pytest.raises(AssertionError, match="keeps 8 samples at home"):
        check_iblurry(too_blurry, home, labels, order, 2, 50, 20)
    with pytest.raises(AssertionError, match="every sample exactly once"):
        check_iblurry([tasks[0], tasks[1][1:]], home, labels, order, 2, 50, 20)


@pytest.mark.parametrize("N,M", [(0, 10), (50, 10), (100, 0), (30, 50)])
def test_iblurry_counts_on_ten_classes(N, M):
    labels = torch.arange(10).repeat_interleave(60)
    scenario = OnlineBlurry(num_tasks=5, disjoint_fraction=N, blurry_fraction=M, seed=3)
    order = scenario.class_sequence(10)
    tasks, home = iblurry_split(labels, order, 5, N, M, torch.Generator().manual_seed(3))
    check_iblurry(tasks, home, labels, order, 5, N, M)


def test_online_stream_has_the_tasks_and_a_fixed_stratified_evaluation_subset():
    y, yt = torch.arange(10).repeat_interleave(60), torch.arange(10).repeat_interleave(30)
    x, xt = torch.randn(len(y), 4), torch.randn(len(yt), 4)
    stream = OnlineBlurry(eval_samples=100, seed=1).build(x, y, xt, yt, 10)
    assert len(stream) == 5 and stream.online.batch_size == 16 and stream.online.eval_every == 100
    assert torch.bincount(yt[stream.online.eval_idx]).tolist() == [10] * 10  # stratified
    again = OnlineBlurry(eval_samples=100, seed=1).build(x, y, xt, yt, 10)
    assert torch.equal(again.online.eval_idx, stream.online.eval_idx)  # fixed by the seed
    for e in stream.experiences:  # each task is tested on its home classes
        assert sorted(yt[e.test_idx].unique().tolist()) == e.classes


# -- domains -------------------------------------------------------------------------------------------------

def tiny_images(n_per_class=4, classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return Split(torch.rand(len(labels), 1, 6, 6, generator=g), labels, [f"s{i}" for i in range(len(labels))])


def test_domain_sequence_by_hand():
    train, test = tiny_images(), tiny_images(2, seed=1)
    scenario = DomainIncremental(rotations=[0, 90])
    domains = scenario.domains(train, test)
    assert [d.name for d in domains] == ["rot0", "rot90"]
    # partition: each class's 4 samples dealt into the two domains, 2 each, no sample twice
    ids = [d.train.ids for d in domains]
    assert len(ids[0]) == len(ids[1]) == 4 and not set(ids[0]) & set(ids[1])
    assert [torch.bincount(d.train.labels).tolist() for d in domains] == [[2, 2], [2, 2]]
    # every domain tests the whole test split, shown in that domain
    assert torch.equal(domains[0].test.images, test.images)
    assert torch.equal(domains[1].test.images, torch.rot90(test.images, 1, (2, 3)))
    rows = {i: r for r, i in enumerate(train.ids)}
    turned = torch.stack([train.images[rows[i]] for i in ids[1]])
    assert torch.equal(domains[1].train.images, torch.rot90(turned, 1, (2, 3)))
    # the stream: experience d holds domain d's rows of the concatenated features, all classes in each
    train_domain = torch.tensor([0] * 4 + [1] * 4)
    test_domain = torch.tensor([0] * 4 + [1] * 4)
    y = torch.cat([d.train.labels for d in domains])
    yt = torch.cat([d.test.labels for d in domains])
    stream = scenario.build(torch.randn(8, 3), y, torch.randn(8, 3), yt, 2, train_domain, test_domain)
    assert [e.train_idx.tolist() for e in stream.experiences] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [e.test_idx.tolist() for e in stream.experiences] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(e.classes == [0, 1] for e in stream.experiences) and not stream.novel_classes


def test_domain_check_fails_on_a_wrong_rotation():
    """Positive control: the hand check above tells a clockwise turn from the counter-clockwise one."""
    test = tiny_images(2, seed=1)
    assert not torch.equal(rotate(test, -90).images, torch.rot90(test.images, 1, (2, 3)))


def test_corruption_domains_and_whole_training_set_per_domain():
    train, test = tiny_images(), tiny_images(2, seed=1)
    domains = DomainIncremental(domains="corruptions", corruptions=["clean", "contrast", "blur"],
                                partition_train=False).domains(train, test)
    assert [d.name for d in domains] == ["clean", "contrast", "blur"]
    assert all(d.train.ids == train.ids for d in domains)  # every domain holds the whole training split
    assert torch.equal(domains[0].train.images, train.images)
    assert domains[1].train.images.std() < train.images.std()  # contrast halved
    assert not torch.equal(domains[2].test.images, test.images)


# -- metrics -------------------------------------------------------------------------------------------------

def test_area_under_the_anytime_curve_by_hand():
    assert metrics.area_under_accuracy([0.5, 0.7, 0.9, 0.6]) == pytest.approx(0.675)
    curve = [[0.8, np.nan, np.nan], [0.9, 0.6, np.nan], [0.7, 0.8, 1.0]]  # classes appear over time
    # class 0: best earlier 0.9, last 0.7 -> 0.2; class 1: 0.6 -> 0.8, -0.2; class 2: never evaluated earlier
    assert metrics.anytime_forgetting(curve) == pytest.approx(0.0)
    assert metrics.anytime_forgetting([[0.8, 0.9], [0.5, 0.3]]) == pytest.approx((0.3 + 0.6) / 2)


# -- the online driver ---------------------------------------------------------------------------------------

class RecordingNCM(NCM):
    """A real NCM that records what the driver hands it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.experiences = [], []

    def observe(self, features, labels, experience: int = 0, ids=None):
        self.batches.append(len(labels))
        self.experiences.append(experience)
        super().observe(features, labels, experience, ids)


def online_stream(eval_every=25, batch_size=8):
    from test_memory import clusters

    x, y = clusters(num_classes=4, per_class=20, dim=8, spread=0.8)
    xt, yt = clusters(num_classes=4, per_class=10, dim=8, spread=0.8, seed=1)
    scenario = OnlineBlurry(num_tasks=2, disjoint_fraction=50, blurry_fraction=20, batch_size=batch_size,
                            eval_every=eval_every, eval_samples=None, seed=0)
    return scenario.build(x, y, xt, yt, 4), Features(x, y), Features(xt, yt)


def drive_online(memory, resume=None, after=None, **kwargs):
    stream, train, test = online_stream(**kwargs)
    return run_stream(stream, memory, train, test, 4, LoggerBase(), resume=resume, after_experience=after)


def test_online_driver_batches_evaluations_and_curve():
    memory = RecordingNCM(8, 4)
    results = drive_online(memory)
    # 80 samples, two tasks of 40; evaluations at 25, 50, 75 and the end; batches of 8, cut short by an evaluation
    # or the end of the data of a task (a new batch starts after each)
    assert results["anytime"]["samples"] == [25, 50, 75, 80]
    assert memory.batches == [8, 8, 8, 1, 8, 7, 8, 2, 8, 8, 8, 1, 5]
    assert sum(memory.batches) == 80
    # the memory is told no task: its `experience` is the window between evaluations
    assert sorted(set(memory.experiences)) == [0, 1, 2, 3]
    assert results["metrics"]["A_auc"] == pytest.approx(np.mean(results["anytime"]["accuracy"]))
    assert results["metrics"]["A_last_anytime"] == results["anytime"]["accuracy"][-1]
    assert results["R"].shape == (2, 2) and "open_set" not in results
    assert [t["anytime_evaluations"] for t in results["timings"]] == [1, 3]  # at 25 in task 0; 50, 75, 80 in task 1


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("restore", [True, False])
def test_an_online_stream_resumed_mid_task_gives_the_same_curve(restore, tmp_path):
    from neurocl import checkpoint

    full = drive_online(NCM(8, 4), eval_every=10)
    path, calls = tmp_path / checkpoint.FILENAME, [0]

    def save_then_die(progress):  # killed after the third anytime evaluation: inside the first task
        checkpoint.save(path, {"progress": progress.state_dict(), "memory": memory.state_dict()})
        calls[0] += 1
        if calls[0] == 3:
            raise Interrupted

    memory = NCM(8, 4)
    with pytest.raises(Interrupted):
        drive_online(memory, after=save_then_die, eval_every=10)
    saved = checkpoint.load(path)
    assert saved["progress"]["done"] == 0 and saved["progress"]["extra"]["anytime"]["position"] == 30
    memory = NCM(8, 4)
    if restore:
        memory.load_state_dict(saved["memory"])
    resumed = drive_online(memory, resume=StreamProgress.from_state(saved["progress"]), eval_every=10)
    same = resumed["anytime"]["accuracy"] == full["anytime"]["accuracy"]
    # positive control: without the memory's state the resumed curve differs
    assert same == restore
    assert resumed["anytime"]["samples"] == full["anytime"]["samples"] == list(range(10, 81, 10))


# -- runs ----------------------------------------------------------------------------------------------------

def test_online_and_domain_runs_on_digits(tmp_path):
    online = execute(compose("experiment=digits_quick", "scenario=online", "memory=ncm",
                             f"paths.cache_dir={tmp_path / 'cache'}"), tmp_path / "online")
    saved = json.loads((tmp_path / "online" / "results.json").read_text())
    assert saved["anytime"]["samples"][-1] == sum(e["train_samples"] for e in saved["experiences"])
    assert saved["metrics"]["A_auc"] == pytest.approx(np.mean(saved["anytime"]["accuracy"]))
    assert (tmp_path / "online" / "anytime_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert online["metrics"]["A_last"] > 0.8
    domain = execute(compose("experiment=digits_quick", "scenario=domain_incremental", "memory=ncm",
                             f"paths.cache_dir={tmp_path / 'cache'}"), tmp_path / "domain")
    R = np.asarray(domain["R"])
    assert R.shape == (4, 4) and domain["feature_cache"]["misses"] == 8  # train and test of four domains
    assert R[0, 0] > R[0, 3]  # digits turned by 90 degrees are another domain for a memory of upright ones


@pytest.mark.parametrize("overrides, message", [
    (["scenario=domain_incremental", "scenario.rotations=[]"], "scenario.rotations=\\[\\]: is empty"),
    (["scenario=domain_incremental", "scenario.domains=corruptions", "scenario.corruptions=[clean,fog]"],
     "names \\['fog'\\]"),
    (["scenario=online", "scenario.blurry_fraction=150"], "must be in \\[0, 100\\]"),
    (["scenario=online", "scenario.blurry_fraction=-1"], "must be in \\[0, 100\\]"),
    (["scenario=online", "scenario.eval_every=0"], "eval_every=0: must be a positive integer"),
    (["scenario=online", "scenario.num_tasks=11"], "exceeds the dataset's 10 classes"),
    (["scenario=online", "memory=naive"], "use a frozen-feature memory: memory=prototypes"),
    (["scenario=domain_incremental", "memory=replay"], "use a frozen-feature memory"),
])
def test_bad_stream_options_fail_before_anything_is_encoded(overrides, message, tmp_path):
    cfg = compose("experiment=digits_quick", f"paths.cache_dir={tmp_path / 'cache'}", *overrides)
    with pytest.raises(ConfigError, match=message):
        execute(cfg, tmp_path / "out")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing encoded


def test_a_domain_scenario_on_text_data_names_the_problem(tmp_path):
    from neurocl.data.base import Split as S

    text = S(["a b", "c d"], torch.tensor([0, 1]), modality="text")
    with pytest.raises(ConfigError, match="this dataset holds text samples"):
        DomainIncremental().domains(text, text)


KILL_ON_THIRD_CHECKPOINT = """
import os, signal, sys, torch
real_save, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):  # the third checkpoint (after the third anytime evaluation): SIGKILL
    calls[0] += 1
    if calls[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
import runpy
sys.argv = ["neurocl.run", *sys.argv[1:]]
runpy.run_module("neurocl.run", run_name="__main__")
"""


def test_an_online_run_killed_mid_stream_resumes_to_the_same_curve(tmp_path):
    env = {**os.environ, "NEUROCL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["experiment=digits_quick", "scenario=online"]
    run = lambda code, directory, *extra: subprocess.run(
        [sys.executable, *code, *args, f"hydra.run.dir={directory}", *extra], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300)
    whole = run(["-m", "neurocl.run"], tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run(["-c", KILL_ON_THIRD_CHECKPOINT], tmp_path / "killed")
    assert killed.returncode == -9, killed.stderr[-2000:]
    from neurocl import checkpoint

    saved = checkpoint.load(tmp_path / "killed" / checkpoint.FILENAME)
    assert saved["progress"]["done"] == 0 and saved["progress"]["extra"]["anytime"]["samples"] == [100, 200]
    resumed = run(["-m", "neurocl.run"], tmp_path / "killed", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    curve = lambda d: json.loads((tmp_path / d / "results.json").read_text())["anytime"]
    assert curve("killed") == curve("whole")
