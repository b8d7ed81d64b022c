"""Queries/s of the spiking memory (prototypes_snn) against the store's own vote on the same prototypes, and
against a bare Norse LIFCell loop of the top-k-currents network's size.

    python benchmarks/snn_throughput.py                       # the end-to-end network (the default)
    python benchmarks/snn_throughput.py memory.network=topk_currents neuron=alif memory.num_timesteps=5

The end-to-end network is measured against the store's own answer with the readout it chose
(memory.readouts()["store"]: the same readout by another means) and against the store's top-k vote on the
same prototypes, whichever readout was chosen (the issue's reference).

The memory is trained on the first `--train` samples of the default stream's cached features (the store
capped at 5,000 prototypes as in the default), then answers test queries at batch 1, 256 and 1024. The
bare loop runs Norse's LIFCell for the same T on B x top_k concept neurons and B x C label neurons with
the same gathered concept->label product: no search, no gathering, no recurrence. The ratio says what the
memory's own work costs on top of the neurons themselves; the store's search alone is timed too, since no
spiking readout over the store can skip it.
"""

import json
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from norse.torch import LIFCell

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_loop import machine  # noqa: E402

from neurocl.encoders import FeatureCache  # noqa: E402
from neurocl.memory.readouts import vote_scores  # noqa: E402
from neurocl.snn.neurons import base_parameters  # noqa: E402
from neurocl.run import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 256, 1024)


def queries_per_second(fn, batch: int, budget_s: float = 3.0) -> float:
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s or done == 0:
        fn()
        done += batch
    return done / (time.perf_counter() - start)


def bare_lif_loop(batch: int, k: int, num_classes: int, steps: int, p):
    concept, label = LIFCell(p), LIFCell(p)
    currents = torch.rand(batch, k)
    weights = torch.rand(batch, k, num_classes)

    def run():
        with torch.no_grad():
            s_concept = s_label = None
            for _ in range(steps):
                z, s_concept = concept(currents, s_concept)
                _, s_label = label(torch.einsum("bk,bkc->bc", z, weights), s_label)
    return run


def store_vote(memory, queries):
    """The store's own top-10 vote on the same prototypes, whichever readout the memory chose."""
    ids, similarities = memory.store.search(queries.float().numpy(), memory.top_k)
    counts = torch.from_numpy(memory.store.label_counts[ids].astype("float32"))
    return vote_scores(torch.from_numpy(similarities).float(), counts, memory.temperature).argmax(dim=1)


def main(argv: list[str]):
    train_n = 10_000
    if argv and argv[0].startswith("--train="):
        train_n, argv = int(argv[0].split("=")[1]), argv[1:]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["memory=prototypes_snn", *argv])
    splits = build(cfg.dataset).load()
    encoder = build(cfg.encoder)
    cache = FeatureCache(cfg.paths.cache_dir)
    train_x = cache.features(encoder, splits.train, splits.name, "train")[:train_n]
    test_x = cache.features(encoder, splits.test, splits.name, "test")
    memory = build(cfg.memory, dim=encoder.dim, num_classes=splits.num_classes)
    train_y = splits.train.labels[:train_n]
    start = time.perf_counter()
    for i in range(0, train_n, 1024):
        memory.observe(train_x[i:i + 1024], train_y[i:i + 1024])
    train_s = time.perf_counter() - start
    memory.end_experience()
    rows = []
    p = base_parameters(memory.neuron)
    for batch in BATCHES:
        queries = test_x[:batch]
        snn = queries_per_second(lambda: memory.predict(queries), batch)
        vote = queries_per_second(lambda: memory.readouts()["store"](queries), batch)
        top_k_vote = queries_per_second(lambda: store_vote(memory, queries), batch)
        bare = queries_per_second(bare_lif_loop(batch, memory.top_k, splits.num_classes, memory.num_timesteps, p),
                                  batch)
        # the prototype search alone (conditioning and top-k), which the memory needs whatever its neurons do:
        # with it, snn/bare can be at most 1 / (1 + bare / search)
        search = queries_per_second(lambda: memory.store.search(queries.float().numpy(), memory.top_k), batch)
        rows.append({"batch": batch, "snn_queries_per_s": snn, "store_vote_queries_per_s": vote, "snn_over_vote": snn / vote,
                     "store_top_k_vote_queries_per_s": top_k_vote, "snn_over_top_k_vote": snn / top_k_vote,
                     "bare_lifcell_queries_per_s": bare,
                     "snn_over_bare": snn / bare, "search_queries_per_s": search,
                     "ceiling_with_search": 1 / (1 + bare / search)})
    report = {"machine": machine(), "device": "cpu", "network": memory.network,
              "neuron": type(memory.neuron).__name__, "num_timesteps": memory.num_timesteps, "top_k": memory.top_k,
              "prototypes": len(memory.store), "train_samples": train_n, "train_s": train_s, "rows": rows}
    print(json.dumps(report, indent=2))
    print(f"\nnetwork={memory.network}, readout {memory.chosen}\n| batch | prototypes_snn queries/s "
          "| store's same readout queries/s | snn / store | store's top-k vote queries/s | snn / vote "
          "| bare Norse LIFCell loop queries/s | snn / bare | search alone queries/s |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['snn_queries_per_s']:,.0f} | {r['store_vote_queries_per_s']:,.0f} | "
              f"{r['snn_over_vote']:.3f} | {r['store_top_k_vote_queries_per_s']:,.0f} | {r['snn_over_top_k_vote']:.3f} | "
              f"{r['bare_lifcell_queries_per_s']:,.0f} | {r['snn_over_bare']:.3f} | {r['search_queries_per_s']:,.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
