"""How many label integrators the vote's network needs: its answer against the store's top-k vote on training
queries (no labels needed, no test data), for each label_stages and both weight precisions.

    python experiments/spiking_end_to_end/label_stages.py encoder=pixels [stages=2,3,4]

A chain of n integrators weighs a winner by max(0, 1 - gap / window)^n, the window the least-squares match of the
vote's exp(-gap / temperature) (neurocl.snn.network.fitted_window); the larger n, the closer the match and the
longer the window (more steps). The memory learns the stream once with memory.readout=vote; the test set's
agreement is printed beside, not used.
"""

import sys
import time

import torch

from neurocl.snn import network as e2e
from stream import learned

PROBE_QUERIES = 5000


def main(argv):
    stages = [2, 3, 4]
    if argv and argv[-1].startswith("stages="):
        stages, argv = [int(v) for v in argv[-1].split("=")[1].split(",")], argv[:-1]
    cfg, memory, _, train, test = learned(["memory=prototypes_snn", "memory.readout=vote", *argv])
    probe = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[:PROBE_QUERIES]]
    vote = memory.readouts()["store"]
    vote_probe, vote_test = vote(probe).labels, vote(test).labels
    base = memory.network_parameters
    print(f"\n`python experiments/spiking_end_to_end/label_stages.py {' '.join(argv)}`\n")
    print("| stream | label_stages | window | weights | same answer as the vote: training queries | test queries "
          "| steps to the answer | s |\n|---|---|---|---|---|---|---|---|")
    for n in stages:
        memory.network_parameters = base._replace(label_stages=n, window=e2e.fitted_window(memory.temperature, n))
        for weights in ("float32", "int8"):
            memory.weights = weights
            start = time.perf_counter()
            on_probe = memory.predict(probe)
            on_test = memory.predict(test)
            same_probe = float((on_probe.labels == vote_probe).float().mean())
            same_test = float((on_test.labels == vote_test).float().mean())
            steps = float(on_probe.evidence["answer_step"].float().mean()) + 1
            print(f"| {' '.join(argv)} | {n} | {memory.network_parameters.window:.3f} | {weights} | {same_probe:.4f} "
                  f"| {same_test:.4f} | {steps:.1f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
