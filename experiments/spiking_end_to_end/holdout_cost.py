"""What holding out a fifth of each experience (to choose the readout, memory.readout=auto) costs the store's vote:
its test accuracy after the stream with memory.readout=vote (nothing held out) and with auto, seeds 0-2.

    python experiments/spiking_end_to_end/holdout_cost.py encoder=efficientnet_lite0
"""

import sys

from stream import learned


def main(argv):
    print(f"\n`python experiments/spiking_end_to_end/holdout_cost.py {' '.join(argv)}`\n")
    print("| seed | readout | chosen | the store's test accuracy |\n|---|---|---|---|")
    for seed in (0, 1, 2):
        for readout in ("vote", "auto"):
            _, memory, splits, _, test = learned(["memory=prototypes_snn", f"memory.readout={readout}", f"seed={seed}",
                                                  *argv])
            store = memory.readouts()["store"](test).labels
            print(f"| {seed} | {readout} | {memory.chosen} | {float((store == splits.test.labels).float().mean()):.4f} |",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
