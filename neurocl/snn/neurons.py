"""The spiking network of `prototypes_snn`: concept neurons driven by prototype similarities, label neurons by their spikes.

A batch of B queries is one tensor program over T steps of dt. Each query sees
its own K candidate concept neurons (its top-K prototypes), so the weights
arrive gathered per query:

    concept input  I_bk(t) = current_bk + sum_j R_bkj z_bj(t-1)    (R: recurrent, attractors)
    label input    J_bc(t) = sum_k W_bkc z_bk(t)                   (W: concept -> label)

The neuron model is Norse's own feed-forward step for the parameters given:
`LIFParameters` (lif), `LSNNParameters` (alif, adaptive threshold) or
`ParametricLIFParameters` (plif: LIF with a learned membrane time constant per
concept neuron, Fang et al. 2021). A synaptic operation (SOP) is one
presynaptic spike delivered along one non-zero synapse.
"""

from typing import NamedTuple

import torch
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step
from norse.torch.functional.lsnn import LSNNFeedForwardState, LSNNParameters, lsnn_feed_forward_step

from neurocl.errors import ConfigError, check_finite


class ParametricLIFParameters(NamedTuple):
    """plif: `lif` gives the initial values; tau_mem_inv is then learned per concept neuron."""
    lif: LIFParameters
    tau_lr: float = 0.1              # gradient step on log(tau_mem_inv), surrogate gradients through the spikes
    tau_mem_inv_min: float = 20.0    # 1/s
    tau_mem_inv_max: float = 1000.0  # 1/s; at most 1/dt, for a stable Euler step


class SpikeRecord(NamedTuple):
    concept_spikes: torch.Tensor  # (T, B, K)
    label_spikes: torch.Tensor    # (T, B, C)
    label_drive: torch.Tensor     # (B, C) summed label input, the membrane's view of the evidence
    sops: torch.Tensor            # (B,) synaptic operations per query

    @property
    def label_counts(self) -> torch.Tensor:  # (B, C)
        return self.label_spikes.sum(dim=0)


def base_parameters(p):
    """The Norse parameters a model steps with (plif steps as LIF)."""
    return p.lif if isinstance(p, ParametricLIFParameters) else p


def initial_state(p, shape, like: torch.Tensor):
    """Norse's resting state for the model that `p` parameterises."""
    p = base_parameters(p)
    if not isinstance(p, (LSNNParameters, LIFParameters)):
        raise ConfigError("neuron", type(p).__name__, "is not a neuron model the spiking memory knows",
                          "use neuron=lif, neuron=alif or neuron=plif")
    v = torch.full(shape, float(p.v_leak), dtype=like.dtype, device=like.device)
    zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
    if isinstance(p, LSNNParameters):
        return LSNNFeedForwardState(v=v, i=zeros, b=zeros)
    return LIFFeedForwardState(v=v, i=zeros)


def neuron_step(p):
    return lsnn_feed_forward_step if isinstance(base_parameters(p), LSNNParameters) else lif_feed_forward_step


def check_timesteps(num_timesteps):
    if not isinstance(num_timesteps, int) or num_timesteps <= 0:
        raise ConfigError("memory.num_timesteps", num_timesteps, "must be a positive integer",
                          "set memory.num_timesteps=20")


def simulate(currents: torch.Tensor, label_weights: torch.Tensor, concept_neuron, label_neuron,
             num_timesteps: int = 20, recurrent: torch.Tensor | None = None,
             tau_mem_inv: torch.Tensor | None = None, label_current: torch.Tensor | None = None,
             dt: float = 1e-3) -> SpikeRecord:
    """Run B queries for `num_timesteps` steps.

    currents: (B, K) constant input to the candidate concept neurons; label_weights: (B, K, C);
    recurrent: (B, K_post, K_pre) or None; tau_mem_inv: (B, K) per-neuron membrane rates (plif);
    label_current: (B, C) extra constant input to the label neurons (a teacher).
    """
    check_timesteps(num_timesteps)
    check_finite(currents, "similarity currents")
    concept_p = base_parameters(concept_neuron)
    if tau_mem_inv is not None:
        concept_p = concept_p._replace(tau_mem_inv=tau_mem_inv)
    label_p = base_parameters(label_neuron)
    B, K = currents.shape
    C = label_weights.shape[2]
    concept_state = initial_state(concept_p, (B, K), currents)
    label_state = initial_state(label_p, (B, C), currents)
    concept_step, label_step = neuron_step(concept_p), neuron_step(label_p)
    fan_out = (label_weights != 0).sum(dim=2).to(currents.dtype)  # (B, K) synapses leaving each concept neuron
    if recurrent is not None:
        fan_out = fan_out + (recurrent != 0).sum(dim=1).to(currents.dtype)
    z_concept = torch.zeros_like(currents)
    concept_spikes, label_spikes, drive = [], [], torch.zeros(B, C, dtype=currents.dtype, device=currents.device)
    for _ in range(num_timesteps):
        concept_input = currents if recurrent is None else currents + torch.einsum("bij,bj->bi", recurrent, z_concept)
        z_concept, concept_state = concept_step(concept_input, concept_state, concept_p, dt)
        label_input = torch.einsum("bk,bkc->bc", z_concept, label_weights)
        drive = drive + label_input
        if label_current is not None:
            label_input = label_input + label_current
        z_label, label_state = label_step(label_input, label_state, label_p, dt)
        concept_spikes.append(z_concept)
        label_spikes.append(z_label)
    concept_spikes = torch.stack(concept_spikes)
    sops = (concept_spikes.detach() * fan_out).sum(dim=(0, 2))
    return SpikeRecord(concept_spikes, torch.stack(label_spikes), drive, sops)
