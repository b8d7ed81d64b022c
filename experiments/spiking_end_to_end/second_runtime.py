"""The exported whole memory run by a second runtime, from the file alone: NIR's equations (neurocl/snn/nir_graph.py,
which shares no code with the memory's simulator) over every search neuron, against the trained memory's answers.

    python experiments/spiking_end_to_end/second_runtime.py dataset=digits encoder=efficientnet_lite0 [--queries=N]

The memory learns the stream as the driver feeds it (class-incremental, seed 0, observe batches of 1,024), writes
network.nir, reads it back (nir.read, then neurocl's checks), and both answer the test queries.
"""

import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from tqdm.auto import tqdm

from neurocl.encoders import FeatureCache
from neurocl.run import build
from neurocl.snn.network import clock
from neurocl.snn.nir_graph import read_graph, run_graph

ROOT = Path(__file__).resolve().parents[2]


def main(argv):
    limit = None
    if argv and argv[-1].startswith("--queries="):
        limit, argv = int(argv[-1].split("=")[1]), argv[:-1]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["memory=prototypes_snn", *argv])
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir, enabled=cfg.cache.enabled)
    train = cache.features(encoder, splits.train, splits.name, "train")
    test = cache.features(encoder, splits.test, splits.name, "test")
    stream = build(cfg.scenario).build(train, splits.train.labels, test, splits.test.labels, splits.num_classes)
    memory = build(cfg.memory, dim=encoder.dim, num_classes=splits.num_classes)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    for e in stream.experiences:
        order = e.train_idx[torch.randperm(len(e.train_idx), generator=shuffle)]
        for i in range(0, len(order), cfg.observe_batch_size):
            rows = order[i:i + cfg.observe_batch_size]
            memory.observe(train[rows], splits.train.labels[rows], e.index, ids=rows)
    queries = test[:limit] if limit else test
    start = time.perf_counter()
    prediction = memory.predict(queries)
    simulator_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network.nir"
        nir.write(path, memory.to_nir())
        size_mb = path.stat().st_size / 2**20
        graph = read_graph(path)
    layers = memory.network_layers()
    p, dt = layers.parameters, float(graph.metadata["dt"])
    answers, steps = [], []
    start = time.perf_counter()
    for i in tqdm(range(0, len(queries), 250), desc="NIR equations", unit="batch"):
        z = memory.network_input(queries[i:i + 250], layers).numpy()
        T, B = p.num_timesteps, len(z)
        x = np.concatenate([np.broadcast_to(z, (T, B, z.shape[1])),
                            np.broadcast_to(clock(p).numpy()[:, None, None], (T, B, 1))], axis=2)
        out = run_graph(graph, x, dt=dt, record=("output", "answer"))
        spiked = out["answer"][:, :, 0] > 0
        step = np.where(spiked.any(axis=0), spiked.argmax(axis=0), T - 1)
        answers.append(out["output"][step, np.arange(B)].argmax(axis=1))
        steps.append(step)
    runtime_s = time.perf_counter() - start
    answers, steps = np.concatenate(answers), np.concatenate(steps)
    same = float((answers == prediction.labels.numpy()).mean())
    same_step = float((steps == prediction.evidence["answer_step"].numpy()).mean())
    print(f"\n`python experiments/spiking_end_to_end/second_runtime.py {' '.join(argv)}`\n")
    print("| stream | readout | search neurons | test queries | same winner | same answer step | file MB "
          "| simulator s | NIR equations s |\n|---|---|---|---|---|---|---|---|---|")
    print(f"| {' '.join(argv)} | {memory.chosen} | {len(layers.search)} | {len(queries)} | {same:.4f} | {same_step:.4f} "
          f"| {size_mb:.1f} "
          f"| {simulator_s:.1f} | {runtime_s:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
