"""Loggers read back from what they wrote: W&B offline run files (wandb's own protobuf records) and TensorBoard
event files (TensorBoard's own reader). Each check has a positive control: the same check with a wrong
expectation fails."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, compose
from neurocl.errors import ConfigError
from neurocl.loggers import Loggers, RunInfo, TensorBoardLogger, WandbLogger
from neurocl.run import execute

# --- reading a W&B offline run ------------------------------------------------------------------------------------
# run-<id>.wandb is a LevelDB-style log: a 7-byte file header (":W&B", magic 0xBEE1, version), then 32 KiB blocks
# of chunks (crc32 of type+data, length, type FULL/FIRST/MIDDLE/LAST), each complete record a wandb.proto Record.
# wandb 0.31 writes it from its Go core and no longer ships a Python reader (sdk.internal.datastore is gone).

BLOCK, HEADER = 32768, 7


def wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == crc, f"{path}: bad checksum at byte {pos}"
        pos += HEADER + length
        pending += chunk
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def put(target: dict, item, value):
    keys = list(item.nested_key) or [item.key]
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def read_wandb_run(run_dir: Path) -> dict:
    """What an offline run holds: its run record, config, history rows, final summary, exit record, files."""
    (log,) = run_dir.glob("run-*.wandb")
    out = {"dir": run_dir, "run": None, "config": {}, "history": [], "summary": {}, "exit": None}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                put(out["config"], item, json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                put(out["config"], item, json.loads(item.value_json))
        elif kind == "history":
            row = {}
            for item in record.history.item:
                put(row, item, json.loads(item.value_json))
            out["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                put(out["summary"], item, json.loads(item.value_json))
        elif kind == "exit":
            out["exit"] = record.exit
    return out


def offline_runs(directory: Path) -> list[dict]:
    import wandb

    # finish() can return before W&B's service has written a run's whole transaction log (CI once read a log
    # with no run record); the service flushes and closes every log when it shuts down.
    wandb.teardown()
    return [read_wandb_run(d) for d in sorted((directory / "wandb").glob("offline-run-*"))]


def table(run: dict, key: str) -> dict:
    ref = run["summary"][key]
    assert ref["_type"] == "table-file", ref
    return json.loads((run["dir"] / "files" / ref["path"]).read_text())


def check_wandb_run(run: dict, results: dict, name: str, group: str, job_type: str):
    R = np.asarray(results["R"])
    assert run["run"].display_name == name and run["run"].run_group == group and run["run"].job_type == job_type
    assert run["dir"].name.endswith(run["run"].run_id)
    assert run["config"]["memory"]["_target_"] == results["config"]["memory"]["_target_"]
    assert run["config"]["seed"] == results["config"]["seed"]
    rows = [row for row in run["history"] if "R/0" in row]
    assert [row["_step"] for row in rows] == list(range(len(R)))  # step = experience
    for t, row in enumerate(rows):
        assert [row[f"R/{k}"] for k in range(len(R))] == pytest.approx(R[t].tolist())
        assert row["accuracy/seen_mean"] == pytest.approx(R[t, :t + 1].mean())
        assert row["timing/observe_s"] == pytest.approx(results["timings"][t]["observe_s"])
    assert run["summary"]["A_last"] == pytest.approx(results["metrics"]["A_last"])
    assert run["summary"]["memory/memory_bytes"] == results["memory_stats"]["memory_bytes"]
    R_table = table(run, "R_matrix")
    assert R_table["columns"] == ["trained_through", *(f"exp{k}" for k in range(len(R)))]
    assert np.allclose([row[1:] for row in R_table["data"]], R)
    heatmap = run["summary"]["plots/accuracy_matrix"]
    assert heatmap["_type"] == "image-file" and (run["dir"] / "files" / heatmap["path"]).read_bytes()[:4] == b"\x89PNG"
    conditions = table(run, "conditions")
    assert conditions["data"][0][:2] == ["clean", "memory"]
    assert run["exit"] is not None and run["exit"].exit_code == 0  # finished


RUN = ["encoder=pixels", "memory=ncm", "cache.enabled=false", "checkpoint=false"]


def test_wandb_offline_run_is_read_back(tmp_path, fmnist_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(f"dataset.root={fmnist_dir}", *RUN, "logger=[console,wandb]", f"paths.cache_dir={tmp_path / 'c'}")
    assert list(cfg.logger) == ["console", "wandb"]
    results = execute(cfg, tmp_path / "out")  # composed without Hydra's runtime: names from the classes
    (run,) = offline_runs(tmp_path / "out")
    check_wandb_run(run, results, "FashionMNIST-NCM-seed0", "", "NCM")
    print(f"\nW&B offline run {run['run'].run_id}: {len(run['history'])} history rows, "
          f"A_last {run['summary']['A_last']}, R table {len(table(run, 'R_matrix')['data'])} rows")
    # Positive controls: the same check fails on a wrong expectation, and the reader on a damaged file.
    wrong = {**results, "metrics": {**results["metrics"], "A_last": results["metrics"]["A_last"] - 0.5}}
    with pytest.raises(AssertionError):
        check_wandb_run(run, wrong, "FashionMNIST-NCM-seed0", "", "NCM")
    with pytest.raises(AssertionError):
        check_wandb_run(run, {**results, "R": np.asarray(results["R"])[::-1]}, "FashionMNIST-NCM-seed0", "", "NCM")
    with pytest.raises(AssertionError):
        check_wandb_run(run, results, "FashionMNIST-NCM-seed0", "a-sweep", "NCM")
    (log,) = run["dir"].glob("run-*.wandb")
    damaged = bytearray(log.read_bytes())
    damaged[200] ^= 0xFF
    log.write_bytes(bytes(damaged))
    with pytest.raises(AssertionError, match="bad checksum"):
        read_wandb_run(run["dir"])


def check_sweep(runs: list[dict], group: str, seeds: list[int]):
    ids = [run["run"].run_id for run in runs]
    assert len(set(ids)) == len(runs), f"runs share an id: {ids}"
    assert [run["run"].run_group for run in runs] == [group] * len(runs)
    assert [run["config"]["seed"] for run in runs] == seeds
    assert [run["run"].display_name for run in runs] == [f"fashion_mnist-ncm-seed{s}" for s in seeds]
    assert [run["run"].job_type for run in runs] == ["ncm"] * len(runs)  # the memory's config name
    for run in runs:  # each job logged its own experiences into its own run, and finished it
        assert [row["_step"] for row in run["history"] if "R/0" in row] == list(range(5))
        assert run["exit"] is not None and run["exit"].exit_code == 0


def test_sequential_multirun_gives_one_wandb_run_per_job(tmp_path, fmnist_dir):
    env = {**os.environ, "WANDB_MODE": "offline"}
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "neurocl.run", "--multirun", "seed=0,1", "logger=[console,wandb]",
                           f"dataset.root={fmnist_dir}", *RUN, f"paths.cache_dir={tmp_path / 'c'}",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    per_job = [offline_runs(sweep / str(job)) for job in (0, 1)]
    assert [len(runs) for runs in per_job] == [1, 1]  # one W&B run per job, in the job's own directory
    runs = [runs[0] for runs in per_job]
    check_sweep(runs, "sweep", [0, 1])
    print(f"\nsweep: W&B runs {[r['run'].run_id for r in runs]} in group {runs[0]['run'].run_group!r}")
    for control in ([runs[0], runs[0]], runs[::-1]):  # positive controls: one run twice; the jobs swapped
        with pytest.raises(AssertionError):
            check_sweep(control, "sweep", [0, 1])
    with pytest.raises(AssertionError):
        check_sweep(runs, "another-sweep", [0, 1])


def info(tmp_path, resume=None, name="resume-test") -> RunInfo:
    return RunInfo(config={"seed": 0, "memory": {"_target_": "x"}}, output_dir=tmp_path, name=name, group=None,
                   job_type="ncm", resume=resume)


def log_three(logger, values=(0.5, 0.6, 0.7)):
    for t, v in enumerate(values):
        logger.log_experience(t, np.full(3, v), {"classes_seen": 2 * (t + 1)}, {"experience": t, "observe_s": 0.1})


def test_wandb_resume_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first = Loggers({"wandb": WandbLogger()})
    first.start(info(tmp_path / "a"))
    log_three(first)
    state = first.state_dict()  # what the checkpoint keeps
    first.close()
    run_id = state["wandb"]["run_id"]
    again = Loggers({"wandb": WandbLogger()})
    again.start(info(tmp_path / "b", resume=state))
    assert again.state_dict() == state
    again.close()
    fresh = Loggers({"wandb": WandbLogger()})  # positive control: without the checkpoint's state, a new run
    fresh.start(info(tmp_path / "c"))
    fresh.close()
    ids = {d: [r["run"].run_id for r in offline_runs(tmp_path / d)] for d in "abc"}
    print(f"\nW&B run ids: first {ids['a']}, resumed {ids['b']}, fresh {ids['c']}")
    assert ids["a"] == ids["b"] == [run_id]
    assert ids["c"] != [run_id] and len(ids["c"]) == 1


def test_wandb_options_are_checked_when_built(tmp_path, monkeypatch):
    import wandb

    with pytest.raises(ConfigError, match="logger.wandb.mode"):
        WandbLogger(mode="sometimes")
    # Online without credentials fails when the logger is built (before encoding), naming the ways out.
    wandb.teardown()  # wandb keeps the settings it first saw in a process
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    try:
        with pytest.raises(ConfigError, match="no W&B credentials.*WANDB_MODE=offline"):
            WandbLogger()
        WandbLogger(mode="offline")  # control: the same process builds an offline logger
    finally:
        wandb.teardown()


def test_logger_presets_compose_and_build():
    from hydra.utils import instantiate

    assert list(compose().logger) == ["console"]  # the default
    assert list(compose("logger=all").logger) == ["console", "wandb", "tensorboard"]
    assert list(compose("logger=[tensorboard,console]").logger) == ["tensorboard", "console"]
    built = Loggers({k: instantiate(v) for k, v in compose("logger=all").logger.items()})  # WANDB_MODE=disabled
    assert [type(x).__name__ for x in built.loggers.values()] == ["ConsoleLogger", "WandbLogger", "TensorBoardLogger"]


# --- TensorBoard ------------------------------------------------------------------------------------------------

def tensorboard_events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def check_tensorboard(events, results: dict):
    R = np.asarray(results["R"])
    for k in range(len(R)):
        scalars = events.Scalars(f"R/{k}")
        assert [s.step for s in scalars] == list(range(len(R)))
        assert [s.value for s in scalars] == pytest.approx(R[:, k].tolist())
    assert [s.value for s in events.Scalars("accuracy/seen_mean")] == pytest.approx(
        [R[t, :t + 1].mean() for t in range(len(R))])
    assert events.Scalars("summary/A_last")[-1].value == pytest.approx(results["metrics"]["A_last"])
    assert "plots/accuracy_matrix" in events.Tags()["images"]
    image = events.Images("plots/accuracy_matrix")[-1]
    assert image.encoded_image_string[:4] == b"\x89PNG" and image.width > 100


def test_tensorboard_event_files_are_read_back(tmp_path, fmnist_dir):
    cfg = compose(f"dataset.root={fmnist_dir}", *RUN, "logger=[console,tensorboard]",
                  f"paths.cache_dir={tmp_path / 'c'}")
    results = execute(cfg, tmp_path / "out")
    events = tensorboard_events(tmp_path / "out" / "tensorboard")
    check_tensorboard(events, results)
    assert "_hparams_/experiment" in events.summary_metadata  # the config against the final metrics
    print(f"\nTensorBoard: {len(events.Tags()['scalars'])} scalar tags, images {events.Tags()['images']}")
    wrong = {**results, "metrics": {**results["metrics"], "A_last": results["metrics"]["A_last"] - 0.5}}
    with pytest.raises(AssertionError):  # positive control
        check_tensorboard(events, wrong)


def killed_then_resumed(directory: Path, resume: dict | None) -> list:
    killed = TensorBoardLogger(hparams=False)
    killed.start(info(directory))
    log_three(killed)  # experiences 0, 1, 2 logged; say the last checkpoint was written after experience 0
    state = killed.state_dict()
    killed.close()
    resumed = TensorBoardLogger(hparams=False)
    resumed.start(info(directory, resume=resume))
    for t, v in ((1, 0.25), (2, 0.35)):
        resumed.log_experience(t, np.full(3, v), {}, {"experience": t, "observe_s": 0.1})
    assert state == {"last_experience": 2} and resumed.state_dict() == {"last_experience": 2}
    resumed.close()
    return [(s.step, round(s.value, 4)) for s in tensorboard_events(directory / "tensorboard").Scalars("R/0")]


def test_tensorboard_resume_replaces_what_followed_the_checkpoint(tmp_path):
    # The killed run's experiences 1 and 2 are replaced by the resumed run's, each step once.
    assert killed_then_resumed(tmp_path / "a", {"last_experience": 0}) == [(0, 0.5), (1, 0.25), (2, 0.35)]
    # Positive control: resumed without the checkpoint's state, both runs' steps 1 and 2 remain.
    assert killed_then_resumed(tmp_path / "b", None) == [(0, 0.5), (1, 0.6), (2, 0.7), (1, 0.25), (2, 0.35)]


def anytime_killed_then_resumed(directory: Path, resume: dict | None) -> list:
    killed = TensorBoardLogger(hparams=False)
    killed.start(info(directory))
    for samples, accuracy in ((100, 0.5), (200, 0.6), (300, 0.7)):  # say the checkpoint followed sample 100
        killed.log_anytime(samples, accuracy)
    killed.close()
    resumed = TensorBoardLogger(hparams=False)
    resumed.start(info(directory, resume=resume))
    for samples, accuracy in ((200, 0.65), (300, 0.75)):
        resumed.log_anytime(samples, accuracy)
    assert resumed.state_dict()["last_anytime"] == 300
    resumed.close()
    events = tensorboard_events(directory / "tensorboard" / "anytime")
    return [(s.step, round(s.value, 4)) for s in events.Scalars("anytime/accuracy")]


def test_tensorboard_anytime_curve_is_read_back_and_resumes_in_its_own_steps(tmp_path):
    # step = stream samples, in its own event files: the resumed run replaces what followed its checkpoint
    assert anytime_killed_then_resumed(tmp_path / "a", {"last_experience": None, "last_anytime": 100}) == \
        [(100, 0.5), (200, 0.65), (300, 0.75)]
    # positive control: resumed without the checkpoint's state, the killed run's points remain
    assert anytime_killed_then_resumed(tmp_path / "b", None) == [(100, 0.5), (200, 0.6), (300, 0.7), (200, 0.65),
                                                                 (300, 0.75)]


def test_wandb_gets_the_anytime_curve_of_an_online_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("experiment=digits_quick", "scenario=online", "memory=ncm", "logger=[console,wandb]",
                  f"paths.cache_dir={tmp_path / 'c'}")
    results = execute(cfg, tmp_path / "out")
    (run,) = offline_runs(tmp_path / "out")
    curve = table(run, "anytime_accuracy_table")
    assert [row[0] for row in curve["data"]] == results["anytime"]["samples"]
    assert [row[1] for row in curve["data"]] == pytest.approx(results["anytime"]["accuracy"])
    assert run["summary"]["A_auc"] == pytest.approx(results["metrics"]["A_auc"])
