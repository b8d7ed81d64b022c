"""Why kernel ridge has no spiking form here: its answers when the kernel is read from spike times, as a network
would read it, and with 8-bit weights.

    python experiments/spiking_end_to_end/kernel_ridge_spiking.py encoder=pixels

The store's kernel ridge scores a query z by sum_i alpha_ic exp(-(2 - 2 z.p_i) / scale) over every prototype. The
exact spiking form considered: search neurons with synapses -p_i and a rising clock (the least similar fires first,
at t_i ~ 2 ramp (1 + s_i)), each spike read at the last step by a leaky synapse of decay exp(-1 / (ramp scale)) per
step, which gives exp(2 s_i / scale) up to a per-query factor, times alpha_ic on the label synapses. Its only error
is the spike time's step; this script computes the spike times in closed form (no simulation) and counts the
queries on which the argmax still matches the store's kernel ridge, for ramp_steps 100 to 400 (2 ramp_steps
steps per unit of similarity).
"""

import math
import sys

import torch

from neurocl.snn.memory import quantize_int8
from stream import learned

GAIN = 40.0  # the search current per unit of similarity, as memory.search_gain


def spike_steps(similarities: torch.Tensor, ramp: int, steps: int) -> torch.Tensor:
    """First step t with GAIN * sum_{tau <= t} (u_tau - s) > 1, u_tau = -1 + tau / ramp: searched on the threshold
    (sum u - 1 / GAIN) / (t + 1), which rises after its minimum."""
    t = torch.arange(steps, dtype=torch.float64)
    threshold = (torch.cumsum(-1 + t / ramp, 0) - 1 / GAIN) / (t + 1)
    low = int(threshold.argmin())
    return low + torch.searchsorted(threshold[low:].contiguous(), similarities.double().contiguous(), right=True)


def main(argv):
    _, memory, splits, _, test = learned(["memory=prototypes", "memory.readout=kernel_ridge", *argv])
    store = memory.predict(test).labels  # settles the store and fits the chosen readout
    fitted = memory._fitted[0]
    seen = memory.known_classes()
    z = memory._centred(test.numpy())
    print(f"\n`python experiments/spiking_end_to_end/kernel_ridge_spiking.py {' '.join(argv)}`\n")
    print(f"{memory.chosen}: {len(fitted.prototypes)} prototypes, kernel scale {fitted.scale:.3f}, ridge coefficients "
          f"up to {float(fitted.coefficients.abs().max()):.1f} in magnitude; the store's accuracy "
          f"{float((store == splits.test.labels).float().mean()):.4f}\n")
    print("| stream | ramp_steps | weights | same answer as kernel ridge | accuracy |\n|---|---|---|---|---|")
    for ramp in (100, 200, 400):
        steps = 4 * ramp + 50
        decay = math.exp(-1.0 / (ramp * fitted.scale))
        for weights in ("float32", "int8"):
            prototypes, coefficients = fitted.prototypes, fitted.coefficients
            if weights == "int8":
                prototypes, coefficients = quantize_int8(prototypes), quantize_int8(coefficients)
            fired = spike_steps(z @ prototypes.T, ramp, steps)
            kernel = torch.pow(torch.tensor(decay, dtype=torch.float64), (steps - 1 - fired).double()).float()
            answers = (kernel @ coefficients).masked_fill(~seen, float("-inf")).argmax(dim=1)
            print(f"| {' '.join(argv)} | {ramp} | {weights} | {float((answers == store).float().mean()):.4f} "
                  f"| {float((answers == splits.test.labels).float().mean()):.4f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
