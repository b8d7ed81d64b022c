"""Kernel ridge as the spiking network holds it (memory.readout=kernel_ridge): its answers against the store's exact
kernel ridge for three clock ramps, in float32, with 8-bit weights rounded one by one, and with the error-compensated
rounding the memory uses (neurocl/snn/memory.py kernel_int8).

    python experiments/spiking_end_to_end/kernel_ridge_spiking.py encoder=pixels

The network (neurocl/snn/network.py): search neurons with synapses -p_i and a rising clock (the least similar fires
first, at t_i ~ 2 ramp (1 + s_i)), each spike read at the last step by a leaky integrator of decay
exp(-1 / (ramp scale)) per step, which gives exp(2 s_i / scale) up to a per-query factor, times alpha_ic on the label
synapses. Its only error in float32 is the spike time's step (run_kernel_layer, exact for the network; the memory
runs ramp_steps = 4 x 100). The memory here is trained as the driver feeds it, seed 0.
"""

import math
import sys

import torch

from neurocl.snn import network as e2e
from neurocl.snn.memory import KERNEL_CLOCK, KERNEL_MARGIN, kernel_int8, quantize_int8
from stream import learned


def main(argv):
    _, memory, splits, _, test = learned(["memory=prototypes_snn", "memory.readout=kernel_ridge", *argv])
    store = memory.readouts()["store"](test).labels  # settles the store and fits its kernel ridge
    fitted = memory._current_fit()[0]
    seen = memory.known_classes()
    z = memory._centred(test.numpy())
    print(f"\n`python experiments/spiking_end_to_end/kernel_ridge_spiking.py {' '.join(argv)}`\n")
    print(f"{memory.chosen}: {len(fitted.prototypes)} prototypes, kernel scale {fitted.scale:.3f}, ridge coefficients "
          f"up to {float(fitted.coefficients.abs().max()):.1f} in magnitude; the store's accuracy "
          f"{float((store == splits.test.labels).float().mean()):.4f}\n")
    weights = {"float32": (fitted.prototypes, fitted.coefficients),
               "int8, plain rounding": (quantize_int8(fitted.prototypes), quantize_int8(fitted.coefficients)),
               "int8, compensated (the memory's)": kernel_int8(fitted, torch.from_numpy(memory.store.counts[memory.store.ids]))}
    print("| stream | ramp_steps | weights | same answer as kernel ridge | accuracy |\n|---|---|---|---|---|")
    for ramp in (100, 200, KERNEL_CLOCK * memory.network_parameters.ramp_steps):
        p = memory.network_parameters._replace(ramp_steps=ramp, num_timesteps=4 * ramp + KERNEL_MARGIN)
        for name, (prototypes, coefficients) in weights.items():
            record = e2e.run_kernel_layer(z @ prototypes.T, coefficients, p, fitted.scale)
            answers = record.label_potential.masked_fill(~seen, -math.inf).argmax(dim=1)
            print(f"| {' '.join(argv)} | {ramp} | {name} | {float((answers == store).float().mean()):.4f} "
                  f"| {float((answers == splits.test.labels).float().mean()):.4f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
