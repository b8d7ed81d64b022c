"""The exported whole memory run by other runtimes, from the file alone, against the trained memory's answers: NIR's
equations (neurocl/snn/nir_graph.py, which shares no code with the memory's simulator) over every search neuron, and,
for the class layers' feed-forward graph, snnTorch's own NIR import (written for its fixed 0.1 ms step: add
memory.dt=0.0001).

    python experiments/spiking_end_to_end/second_runtime.py dataset=digits encoder=efficientnet_lite0 [--queries=N]

The memory learns the stream as the driver feeds it (class-incremental, seed 0, observe batches of 1,024), writes
network.nir, reads it back (nir.read, then neurocl's checks), and each runtime answers the test queries from it.
"""

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch
from snntorch.import_nir import import_from_nir
from tqdm.auto import tqdm

from neurocl.snn.nir_graph import ANSWER_AT_FIRST_SPIKE, answer_nodes, answers, clock_inputs, read_graph, run_graph
from stream import learned


def main(argv):
    limit = None
    if argv and argv[-1].startswith("--queries="):
        limit, argv = int(argv[-1].split("=")[1]), argv[:-1]
    _, memory, _, _, test = learned(["memory=prototypes_snn", *argv])
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
    expected = prediction.labels.numpy()
    labels, steps, runtime_s = run_batches(lambda x: run_graph(graph, x, dt=float(graph.metadata["dt"]),
                                                               record=answer_nodes(graph)),
                                           graph, memory, layers, queries, "NIR equations")
    same = float((labels == expected).mean())
    same_step = float((steps == prediction.evidence["answer_step"].numpy()).mean())
    snntorch_same, snntorch_s = "n/a (recurrent graph)", "n/a"
    if graph.metadata["answer_rule"] == ANSWER_AT_FIRST_SPIKE:  # feed-forward: snnTorch's own NIR import runs it
        try:
            snntorch_network(graph)
        except AssertionError as e:  # its fixed 0.1 ms step: a file written at another dt is refused
            snntorch_same = f"refused ({e}; write the file with memory.dt=0.0001)"
        else:
            found, _, snntorch_s = run_batches(lambda x: snntorch_run(graph, x), graph, memory, layers, queries,
                                               "snnTorch")
            snntorch_same, snntorch_s = f"{float((found == expected).mean()):.4f}", f"{snntorch_s:.1f}"
    shown = ' '.join([*argv, *([f"--queries={limit}"] if limit else [])])
    print(f"\n`python experiments/spiking_end_to_end/second_runtime.py {shown}`\n")
    print("| stream | readout | search neurons | test queries | NIR equations: same answer | same answer step "
          "| snnTorch: same answer | file MB | simulator s | NIR equations s | snnTorch s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {' '.join(argv)} | {memory.chosen} | {len(layers.search)} | {len(queries)} | {same:.4f} | {same_step:.4f} "
          f"| {snntorch_same} | {size_mb:.1f} | {simulator_s:.1f} | {runtime_s:.1f} | {snntorch_s} |")


def run_batches(run, graph, memory, layers, queries, name, batch=250):
    """(answers, steps, seconds) of `run` over the queries' clocked inputs, in batches."""
    labels, steps = [], []
    start = time.perf_counter()
    for i in tqdm(range(0, len(queries), batch), desc=name, unit="batch"):
        found, step = answers(graph, run(clock_inputs(memory.network_input(queries[i:i + batch], layers).numpy(), graph)))
        labels.append(found)
        steps.append(step)
    return np.concatenate(labels), np.concatenate(steps), time.perf_counter() - start


def snntorch_network(graph):
    with contextlib.redirect_stdout(io.StringIO()):  # its importer prints what it does
        return import_from_nir(graph)


def snntorch_run(graph, x) -> dict:
    """snnTorch's network, imported afresh (no state from another batch), stepped over x (T, B, n): its output spikes."""
    network = snntorch_network(graph)
    torch.set_flush_denormal(True)  # its state decays into denormal floats: 14x slower on this CPU otherwise
    with torch.no_grad():
        return {"output": torch.stack([network(step)[0] for step in torch.from_numpy(np.ascontiguousarray(x))]).numpy()}

if __name__ == "__main__":
    main(sys.argv[1:])
