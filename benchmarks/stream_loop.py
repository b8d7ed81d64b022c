"""Stream-loop throughput on cached features: memories against each other in one run.

    python benchmarks/stream_loop.py                      # the default protocol (Split-FashionMNIST)
    python benchmarks/stream_loop.py experiment=digits_quick

Reports samples/s of observe and of predict for each memory, the cost of
building the stream with Avalanche against plain tensor indexing, and the
machine it ran on. Features come from the feature cache (encoded on a miss).
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from neurocl.driver import Features, predict
from neurocl.encoders import FeatureCache
from neurocl.run import build

ROOT = Path(__file__).resolve().parents[1]
MEMORIES = ["prototypes", "slda", "ncm"]  # slda: the within-class covariance alone, which the store also keeps


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def best_of(fn, repeats=3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir)
    train = Features(cache.features(encoder, splits.train, splits.name, "train"), splits.train.labels)
    test = Features(cache.features(encoder, splits.test, splits.name, "test"), splits.test.labels)
    scenario = build(cfg.scenario)

    stream_s = best_of(lambda: scenario.build(train.x, train.y, test.x, test.y, splits.num_classes).benchmark)
    order = scenario.class_sequence(splits.num_classes)
    groups = [order[i:i + scenario.classes_per_experience] for i in range(0, len(order), scenario.classes_per_experience)]
    plain_s = best_of(lambda: [(torch.isin(train.y, torch.tensor(g)).nonzero(), torch.isin(test.y, torch.tensor(g)).nonzero())
                               for g in groups])
    stream = scenario.build(train.x, train.y, test.x, test.y, splits.num_classes)

    rows = []
    for name in MEMORIES:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            memory_cfg = compose("config", overrides=overrides + [f"memory={name}"]).memory
        memory = build(memory_cfg, dim=train.x.shape[1], num_classes=splits.num_classes)
        observe_s = predict_s = 0.0
        for e in stream.experiences:
            start = time.perf_counter()
            for i in range(0, len(e.train_idx), cfg.observe_batch_size):
                rows_ = e.train_idx[i:i + cfg.observe_batch_size]
                memory.observe(train.x[rows_], train.y[rows_], e.index)
            memory.end_experience()  # as the driver does; counted in observe, as the driver counts it
            observe_s += time.perf_counter() - start
        all_test = test.x[torch.cat([e.test_idx for e in stream.experiences])]
        predict_s = best_of(lambda: predict(memory, all_test, cfg.eval_batch_size))
        rows.append({"memory": name, "observe_samples_per_s": len(train.y) / observe_s,
                     "predict_samples_per_s": len(all_test) / predict_s, **memory.stats()})

    report = {"machine": machine(), "overrides": overrides, "dataset": splits.name,
              "train_samples": len(train.y), "test_samples": len(test.y), "dim": train.x.shape[1],
              "stream_build_avalanche_s": stream_s, "stream_build_plain_s": plain_s, "memories": rows}
    print(json.dumps(report["machine"]))
    print(f"stream of {len(stream)} experiences: Avalanche {stream_s:.3f} s, plain indexing {plain_s:.4f} s "
          f"(Avalanche {stream_s / plain_s:.0f}x slower; built only for Avalanche strategies)")
    base = rows[-1]
    print(f"{'memory':<12}{'observe/s':>12}{'predict/s':>12}{'vs ' + base['memory']:>16}")
    for r in rows:
        print(f"{r['memory']:<12}{r['observe_samples_per_s']:>12.0f}{r['predict_samples_per_s']:>12.0f}"
              f"{r['observe_samples_per_s'] / base['observe_samples_per_s']:>8.3f}/"
              f"{r['predict_samples_per_s'] / base['predict_samples_per_s']:.3f}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
