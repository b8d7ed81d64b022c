"""Online Split-FashionMNIST end to end: the default memory against NCM in one run, and where the time goes.

    python benchmarks/online_stream.py                    # the issue's protocol (below)
    python benchmarks/online_stream.py dataset=digits     # extra args are Hydra overrides

The protocol: 60,000 training samples in one pass, batches of 16, i-Blurry-50-10 over 5 tasks, an anytime
evaluation every 2,000 samples on a fixed stratified subset of 2,000 test samples, cached EfficientNet-Lite0
features; each memory runs the whole `neurocl.run.execute` (checkpoints after every evaluation, the final
answers and plots included). Its wall time is split, from results.json's timings and a profile of the run, into
observe (of it, the store's own insert/absorb/maintenance), the anytime evaluations (of them, the settling
before each answer: end_experience, the readout chosen and fitted on held-out samples), checkpoints, the
task-end evaluations, and the rest (the final answers on every condition, plots, startup).
"""

import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from neurocl.run import execute

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_loop import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ["scenario=online", "scenario.eval_every=2000", "scenario.eval_samples=2000", "scenario.batch_size=16",
            "scenario.disjoint_fraction=50", "scenario.blurry_fraction=10", "logger=console"]
MEMORIES = ["prototypes", "ncm"]
# profile entries (file suffix, function) whose cumulative time is reported
PARTS = {"store observe": ("store.py", "observe"), "settle": ("prototypes.py", "end_experience"),
         "anytime evaluation": ("driver.py", "anytime_evaluation"), "checkpoint save": ("checkpoint.py", "save")}


def cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(entry[3] for (path, _, function), entry in stats.stats.items()
               if path.endswith(suffix) and function == name)


def main(overrides: list[str]):
    rows = []
    for memory in MEMORIES:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=[*PROTOCOL, f"memory={memory}", *overrides])
        profile = cProfile.Profile()
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            profile.enable()
            results = execute(cfg, Path(out))
            profile.disable()
            wall = time.perf_counter() - start
        stats = pstats.Stats(profile)
        timings = results["timings"]
        row = {"memory": memory, "wall_s": wall, "encode_s": results["encode_s"],
               "samples": sum(t["train_samples"] for t in timings),
               "anytime_evaluations": sum(t["anytime_evaluations"] for t in timings),
               "A_auc": results["metrics"]["A_auc"], "A_last": results["metrics"]["A_last"],
               "observe_s": sum(t["observe_s"] for t in timings), "task_end_eval_s": sum(t["eval_s"] for t in timings)}
        row.update({f"{part}_s": cumulative(stats, *where) for part, where in PARTS.items()})
        rows.append(row)
        print(json.dumps(row), flush=True)
    ncm = next(r for r in rows if r["memory"] == "ncm")
    print(f"\nmachine: {json.dumps(machine())}\n")
    print("| memory | wall s | vs ncm | observe s | of it the store's | anytime evaluations s | of it settling | "
          "checkpoints s | task-end evaluations s | A_auc | A_last |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['memory']} | {r['wall_s']:.1f} | {r['wall_s'] / ncm['wall_s']:.1f}x | {r['observe_s']:.1f} | "
              f"{r['store observe_s']:.1f} | {r['anytime evaluation_s']:.1f} | {r['settle_s']:.1f} | "
              f"{r['checkpoint save_s']:.1f} | {r['task_end_eval_s']:.1f} | {r['A_auc']:.4f} | {r['A_last']:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
