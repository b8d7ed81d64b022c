"""Faults and bad input, probed as a user meets them: one line per case.

    python tests/probe_faults.py                # every case: "ok" and what held, or "FAILED" and why
    python tests/probe_faults.py lock cache     # the cases whose names contain one of these words

Each case runs the real commands (python -m neurocl.run, neurocl.analyze), or neurocl's own calls, on real files
in a scratch directory, with real processes for kills, interrupts and races, and raises AssertionError when
the behaviour is wrong. tests/test_faults.py runs every case under pytest.
"""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, compose, write_tiny_fmnist  # noqa: E402

QUICK = ["experiment=digits_quick"]

# neurocl.run, paused or killed right after its first checkpoint: a run caught mid-stream, on cue.
#   argv: pause|kill <marker file> <run overrides...>; pause waits (at most 120 s) for <marker>.go.
HOOKED_RUN = """
import os, signal, sys, time, runpy
from pathlib import Path
import neurocl.checkpoint as checkpoint
action, marker = sys.argv[1], Path(sys.argv[2])
save = checkpoint.save
def hooked(path, state):
    save(path, state)
    if marker.exists():
        return
    marker.touch()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.time() + 120
    while time.time() < deadline and not Path(f"{marker}.go").exists():
        time.sleep(0.05)
checkpoint.save = hooked
sys.argv = ["neurocl.run", *sys.argv[3:]]
runpy.run_module("neurocl.run", run_name="__main__")
"""

# One FeatureCache.features call on the digits training split with raw pixels. argv: <cache dir> <role> <marker>.
# writer: pauses (at most 60 s, until <marker>.go) after its .npy is published and before its checksum file is;
# reader: touches <marker>.reader just before it reads; dying-writer: killed half-way through its .npy.
CACHE_CLIENT = """
import json, os, signal, sys, time
from pathlib import Path
import neurocl.encoders.cache as cache
from neurocl.data.digits import Digits
from neurocl.encoders import Pixels
root, role, marker = sys.argv[1:4]
if role == "writer":
    write_json = cache.write_json
    def paused(path, obj):
        Path(marker).touch()
        deadline = time.time() + 60
        while time.time() < deadline and not Path(f"{marker}.go").exists():
            time.sleep(0.05)
        write_json(path, obj)
    cache.write_json = paused
if role == "dying-writer":
    def dying(f, array):
        f.write(b"\\x93NUMPY half an array")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    cache.np.save = dying
split = Digits().load().train
c = cache.FeatureCache(root)
if role == "reader":
    Path(f"{marker}.reader").touch()
features = c.features(Pixels(image_shape=[1, 8, 8]), split, "digits", "train")
print(json.dumps({"hits": c.hits, "misses": c.misses, "rows": len(features)}))
"""


def environment(tmp: Path) -> dict:
    return {**os.environ, "NEUROCL_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}


def command(tmp: Path, *args, module: str = "run", code: str | None = None, timeout: float = 300):
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", f"neurocl.{module}"]
    return subprocess.run([*argv, *map(str, args)], cwd=ROOT, env=environment(tmp), capture_output=True,
                          text=True, timeout=timeout)


def start(tmp: Path, code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=environment(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {path.name}: "
                                 f"{process.stderr.read()[-1500:]}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"no {path} after {timeout} s")
        time.sleep(0.05)


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def run_in_process(tmp: Path, out: Path, *overrides):
    from neurocl.run import execute

    return execute(compose(*QUICK, f"paths.cache_dir={tmp / 'cache'}", *overrides), out)


def digit_image(tmp: Path) -> Path:
    from PIL import Image

    from neurocl.data.digits import Digits

    image = Digits().load().test.images[0, 0].numpy()
    path = tmp / "digit.png"
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return path


def ok(process, what: str):
    assert process.returncode == 0, f"{what} failed ({process.returncode}): {process.stderr[-2000:]}"


# ----------------------------------------------------------------------------------------------- run directories
def refused_runs_write_nothing(tmp: Path) -> str:
    run = tmp / "run"
    ok(command(tmp, *QUICK, f"hydra.run.dir={run}"), "the first run")
    before = snapshot(run)
    other = command(tmp, *QUICK, "memory=ncm", f"hydra.run.dir={run}")
    assert other.returncode != 0 and "already holds another run" in other.stderr, other.stderr[-1500:]
    resumed = command(tmp, *QUICK, "memory=ncm", "resume=true", f"hydra.run.dir={run}")
    assert resumed.returncode != 0 and "comes from another config" in resumed.stderr, resumed.stderr[-1500:]
    after = snapshot(run)
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert not changed, f"the refused runs changed {changed}"
    return f"memory=ncm and memory=ncm resume=true refused; all {len(before)} files of the run unchanged"


def a_second_run_into_a_busy_directory_is_refused_at_once(tmp: Path) -> str:
    run, marker = tmp / "run", tmp / "first-checkpoint"
    first = start(tmp, HOOKED_RUN, "pause", marker, *QUICK, f"hydra.run.dir={run}")
    wait_for(marker, first)
    began = time.perf_counter()
    second = command(tmp, *QUICK, "seed=1", f"hydra.run.dir={run}")
    refused_in = time.perf_counter() - began
    Path(f"{marker}.go").touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode != 0 and "in use by another run" in second.stderr, second.stderr[-1500:]
    assert f"pid {first.pid}" in second.stderr and "experiment=digits_quick hydra.run.dir=" in second.stderr
    assert "seed=1" not in (run / ".hydra" / "overrides.yaml").read_text()
    assert json.loads((run / "results.json").read_text())["config"]["seed"] == 0
    log = (run / "run.log").read_text()
    assert log.count("results in") == 1 and "in use by another run" not in log
    return (f"refused, its whole command {refused_in:.1f} s with imports, naming pid {first.pid} and its command; "
            "the first run finished alone")


def a_run_removes_only_its_own_temporaries(tmp: Path) -> str:
    run = tmp / "run"
    run.mkdir()
    mine = {".notes.tmp": "a user's notes", ".draft.json.tmp": "a user's draft"}
    for name, text in mine.items():
        (run / name).write_text(text)
    orphan = run / ".checkpoint.pt.k3j2x9.neurocl.tmp"  # as atomic_path names them, left by a killed write
    orphan.write_bytes(b"half a checkpoint")
    ok(command(tmp, *QUICK, f"hydra.run.dir={run}"), "the run")
    assert all((run / name).read_text() == text for name, text in mine.items()), "the run removed a user's file"
    assert not orphan.exists(), "the run left its own orphaned temporary"
    return "the user's .notes.tmp and .draft.json.tmp kept; neurocl's orphaned .checkpoint.pt.*.neurocl.tmp removed"


def ctrl_c_says_how_to_resume(tmp: Path) -> str:
    run, marker = tmp / "run", tmp / "first-checkpoint"
    first = start(tmp, HOOKED_RUN, "pause", marker, *QUICK, f"hydra.run.dir={run}")
    wait_for(marker, first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 130, (first.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    hint = re.search(r"resume it with: (python -m neurocl\.run .*)$", out + err, re.MULTILINE)
    assert hint, (out + err)[-2000:]
    resumed = command(tmp, *shlex.split(hint.group(1))[3:])
    ok(resumed, f"the printed command ({hint.group(1)})")
    assert (run / "results.json").exists()
    return f"exit 130, {len((out + err).strip().splitlines())} lines, no traceback; the printed command resumed it"


# ------------------------------------------------------------------------------------------------ feature cache
def a_cache_reader_waits_for_an_entry_being_written(tmp: Path) -> str:
    cache, marker = tmp / "shared-cache", tmp / "writer-paused"
    writer = start(tmp, CACHE_CLIENT, cache, "writer", marker)
    wait_for(marker, writer)  # its .npy is in place, its checksum file not yet
    reader = start(tmp, CACHE_CLIENT, cache, "reader", marker)
    wait_for(Path(f"{marker}.reader"), reader)
    time.sleep(1.0)  # the reader is at the entry while it is half-written
    Path(f"{marker}.go").touch()
    w_out, w_err = writer.communicate(timeout=120)
    r_out, r_err = reader.communicate(timeout=120)
    assert writer.returncode == 0, f"the writer died: {w_err[-1500:]}"
    assert reader.returncode == 0, r_err[-1500:]
    corrupt = sorted(p.name for p in cache.glob("*.corrupt"))
    assert not corrupt, f"the reader moved the entry being written aside: {corrupt}"
    assert json.loads(r_out.splitlines()[-1])["hits"] == 1, r_out
    return "the reader waited for the writer's checksum and hit the entry; nothing moved aside, the writer lived"


def orphaned_cache_temporaries_go_after_a_day(tmp: Path) -> str:
    from neurocl.encoders.cache import FeatureCache

    cache = tmp / "cache-dir"
    killed = command(tmp, cache, "dying-writer", tmp / "unused", code=CACHE_CLIENT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    orphans = list(cache.glob(".*.tmp"))
    assert len(orphans) == 1, orphans
    old, fresh = orphans[0], cache / (orphans[0].name.replace(".npy.", ".npy.fresh", 1))
    fresh.write_bytes(b"being written right now")
    a_day_and_more = time.time() - 25 * 3600
    os.utime(old, (a_day_and_more, a_day_and_more))
    FeatureCache(cache)
    assert not old.exists(), "an orphan older than a day is still there"
    assert fresh.exists(), "a fresh temporary (a writer may be alive) was removed"
    return "a killed writer's orphan removed once older than a day; a fresh temporary kept"


def an_unusable_cache_directory_is_named_before_encoding(tmp: Path) -> str:
    blocker = tmp / "not-a-directory"
    blocker.write_text("")
    began = time.perf_counter()
    run = command(tmp, *QUICK, f"paths.cache_dir={blocker}/features", f"hydra.run.dir={tmp / 'run'}")
    assert run.returncode != 0 and "paths.cache_dir" in run.stderr and "is a file" in run.stderr, run.stderr[-1500:]
    assert "NotADirectoryError" not in run.stderr and not (tmp / "run" / "results.json").exists()
    return f"DataError naming paths.cache_dir and the fix, {time.perf_counter() - began:.1f} s after start"


# --------------------------------------------------------------------------------- errors before anything is encoded
def refused_before_encoding(tmp: Path, overrides, error, match: str, dataset=()) -> str:
    from neurocl.run import execute

    cache = tmp / "cache"
    with pytest.raises(error, match=match) as raised:
        execute(compose(*QUICK, f"paths.cache_dir={cache}", *dataset, *overrides), tmp / "out")
    assert not list(cache.glob("*.npy")), "features were encoded before the error"
    return f"{error.__name__}: {str(raised.value)[:110]}"


def max_prototypes_below_the_classes(tmp: Path) -> str:
    from neurocl.errors import ConfigError

    return refused_before_encoding(tmp, ["memory.max_prototypes=1"], ConfigError, "max_prototypes=1.*10 classes")


def a_validation_share_that_leaves_a_class_empty(tmp: Path) -> str:
    from neurocl.errors import ConfigError

    return refused_before_encoding(tmp, ["validation_fraction=0.999"], ConfigError, "validation_fraction=0.999")


def a_seed_beyond_32_bits(tmp: Path) -> str:
    from neurocl.errors import ConfigError

    return refused_before_encoding(tmp, ["seed=4294967296"], ConfigError, r"seed=4294967296.*4,294,967,295")


def a_train_size_above_the_data(tmp: Path) -> str:
    from neurocl.errors import ConfigError

    fmnist = write_tiny_fmnist(tmp / "fmnist")
    return refused_before_encoding(tmp, ["dataset.train_size=100000"], ConfigError, "has 80 samples",
                                   dataset=["dataset=fashion_mnist", f"dataset.root={fmnist}"])


# ---------------------------------------------------------------------------------------------- infer, evaluate
def infer_names_a_text_file_that_is_not_utf8(tmp: Path) -> str:
    from neurocl.errors import DataError
    from neurocl.infer import read_inputs

    texts = tmp / "reports.txt"
    texts.write_bytes("cardiomégalie modérée\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8.*iconv") as raised:
        read_inputs(str(texts), "text", None)
    return f"DataError: {str(raised.value)[len(str(texts)):][:90]}"


def infer_and_evaluate_refuse_an_unfinished_run(tmp: Path) -> str:
    from neurocl import evaluate, infer
    from neurocl.errors import DataError

    run, marker = tmp / "run", tmp / "first-checkpoint"
    killed = command(tmp, "kill", marker, *QUICK, f"hydra.run.dir={run}", code=HOOKED_RUN)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    image = digit_image(tmp)
    for call in (lambda *a: infer.main([f"checkpoint={run}", f"input={image}", *a]),
                 lambda *a: evaluate.evaluate([f"checkpoint={run}", *a])):
        with pytest.raises(DataError, match="stopped after 1 of its 5 experiences.*resume=true.*allow_partial=true"):
            call()
    answers = infer.main([f"checkpoint={run}", f"input={image}", "allow_partial=true"])
    result = evaluate.evaluate([f"checkpoint={run}", "allow_partial=true", f"output={tmp / 'e.json'}"])
    assert len(answers) == 1 and result["experiences_seen"] == [1, 5]
    return "both refuse a run killed after 1 of 5 experiences; with allow_partial=true they answer and say 1 of 5"


def infer_says_why_a_run_has_no_checkpoint(tmp: Path) -> str:
    from neurocl import infer
    from neurocl.errors import DataError

    run_in_process(tmp, tmp / "run", "checkpoint=false")
    image = digit_image(tmp)
    with pytest.raises(DataError, match="checkpoint=false.*rerun it with checkpoint=true"):
        infer.main([f"checkpoint={tmp / 'run'}", f"input={image}"])
    (tmp / "empty").mkdir()
    with pytest.raises(DataError, match="no checkpoint at") as raised:
        infer.main([f"checkpoint={tmp / 'empty'}", f"input={image}"])
    assert "resume=true" not in str(raised.value)
    return "a checkpoint=false run: 'rerun it with checkpoint=true'; a folder with no run: no word of resume=true"


def infer_writes_csv_and_jsonl_whichever_is_named(tmp: Path) -> str:
    from neurocl import infer
    from neurocl.errors import ConfigError

    run_in_process(tmp, tmp / "run")
    image = digit_image(tmp)
    infer.main([f"checkpoint={tmp / 'run'}", f"input={image}", f"output={tmp / 'preds.csv'}"])
    assert (tmp / "preds.csv").read_text().startswith("input,label,"), "preds.csv is not a CSV"
    assert json.loads((tmp / "preds.jsonl").read_text().splitlines()[0])["input"] == str(image)
    with pytest.raises(ConfigError, match="is a directory"):  # checked first: the missing checkpoint is not reached
        infer.main([f"checkpoint={tmp / 'no-such-run'}", f"input={image}", f"output={tmp}"])
    return "output=preds.csv: CSV there, JSONL beside it; output=<a folder>: refused before the memory is loaded"


def analyze_names_a_truncated_results_file(tmp: Path) -> str:
    import yaml

    sweep = tmp / "sweep"
    for seed in (0, 1):
        run_in_process(tmp, sweep / str(seed), "memory=ncm", f"seed={seed}", "checkpoint=false")
        (sweep / str(seed) / ".hydra").mkdir()
        (sweep / str(seed) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["memory=ncm", f"seed={seed}"]))
    cut = sweep / "1" / "results.json"
    cut.write_text(cut.read_text()[:500])
    analyzed = command(tmp, sweep, "--out", tmp / "report", module="analyze")
    ok(analyzed, "neurocl.analyze")
    assert analyzed.stderr.count(f"{cut} cannot be read") == 1, analyzed.stderr[-1500:]
    assert "1 runs without a readable results.json" in analyzed.stdout and str(sweep / "1") in analyzed.stdout
    assert "| `memory=ncm` | 1 |" in (tmp / "report" / "results.md").read_text()
    return "the other run is reported; the cut file is named on stderr and its run listed without results"


CASES = {case.__name__: case for case in (
    refused_runs_write_nothing, a_second_run_into_a_busy_directory_is_refused_at_once,
    a_run_removes_only_its_own_temporaries, ctrl_c_says_how_to_resume,
    a_cache_reader_waits_for_an_entry_being_written, orphaned_cache_temporaries_go_after_a_day,
    an_unusable_cache_directory_is_named_before_encoding,
    max_prototypes_below_the_classes, a_validation_share_that_leaves_a_class_empty, a_seed_beyond_32_bits,
    a_train_size_above_the_data,
    infer_names_a_text_file_that_is_not_utf8, infer_and_evaluate_refuse_an_unfinished_run,
    infer_says_why_a_run_has_no_checkpoint, infer_writes_csv_and_jsonl_whichever_is_named,
    analyze_names_a_truncated_results_file)}


def main(words: list[str]) -> int:
    chosen = [name for name in CASES if not words or any(w in name for w in words)]
    failed = 0
    for name in chosen:
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="neurocl-probe-") as tmp, open(Path(tmp) / "output.txt", "w") as out, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):  # the runs' own output
            try:
                line = f"ok      {CASES[name](Path(tmp))}"
            except BaseException as e:  # one line per case, whatever it raised (pytest.raises raises Failed)
                failed += 1
                line = f"FAILED  {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        print(f"{name.replace('_', ' '):<56} {time.perf_counter() - began:5.1f} s  {line}", flush=True)
    print(f"{len(chosen) - failed} of {len(chosen)} cases hold")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    sys.exit(main(sys.argv[1:]))
