"""The spiking readout: concept neurons driven by prototype similarities, label neurons by their spikes.

A batch of B queries is one tensor program over T steps of dt. Concept neuron
n receives the constant current `gain * s_bn` (its prototype's similarity to
query b, 0 outside the query's top-k); label neuron c receives the weighted
concept spikes sum_n W[c, n] z_bn(t). The neuron model is Norse's own
feed-forward step for the parameters given (`LIFParameters`: LIF,
`LSNNParameters`: adaptive threshold). A synaptic operation (SOP) is one
presynaptic spike delivered along one non-zero synapse.

This is the building block of the `prototypes_snn` memory (issue 4); the
memory itself, its recurrent attractors and its learning are still to come.
"""

from typing import NamedTuple

import torch
from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step
from norse.torch.functional.lsnn import LSNNFeedForwardState, LSNNParameters, lsnn_feed_forward_step

from neurocl.errors import ConfigError, check_finite


class SpikeRecord(NamedTuple):
    concept_spikes: torch.Tensor  # (T, B, N)
    label_spikes: torch.Tensor    # (T, B, C)
    sops: torch.Tensor            # (B,) synaptic operations per query

    @property
    def label_counts(self) -> torch.Tensor:  # (B, C): the scores
        return self.label_spikes.sum(dim=0)


def initial_state(p, shape, like: torch.Tensor):
    """Norse's resting state for the model that `p` parameterises."""
    v = torch.full(shape, float(p.v_leak), dtype=like.dtype, device=like.device)
    zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
    if isinstance(p, LSNNParameters):
        return LSNNFeedForwardState(v=v, i=zeros, b=zeros)
    if isinstance(p, LIFParameters):
        return LIFFeedForwardState(v=v, i=zeros)
    raise ConfigError("neuron", type(p).__name__, "is not a neuron model the spiking memory knows",
                      "use neuron=lif or neuron=alif")


def neuron_step(p):
    return lsnn_feed_forward_step if isinstance(p, LSNNParameters) else lif_feed_forward_step


def simulate(similarities: torch.Tensor, weights: torch.Tensor, concept_neuron, label_neuron,
             num_timesteps: int = 20, gain: float = 5.0, dt: float = 1e-3) -> SpikeRecord:
    """Run B queries for `num_timesteps` steps. similarities: (B, N); weights: (C, N)."""
    if not isinstance(num_timesteps, int) or num_timesteps <= 0:
        raise ConfigError("memory.num_timesteps", num_timesteps, "must be a positive integer",
                          "set memory.num_timesteps=20")
    check_finite(similarities, "similarities")
    current = gain * similarities
    concept_state = initial_state(concept_neuron, current.shape, current)
    label_state = initial_state(label_neuron, (current.shape[0], weights.shape[0]), current)
    concept_step, label_step = neuron_step(concept_neuron), neuron_step(label_neuron)
    fan_out = (weights != 0).sum(dim=0).to(current.dtype)  # (N,) synapses leaving each concept neuron
    concept_spikes, label_spikes = [], []
    for _ in range(num_timesteps):
        z_concept, concept_state = concept_step(current, concept_state, concept_neuron, dt)
        z_label, label_state = label_step(z_concept @ weights.T, label_state, label_neuron, dt)
        concept_spikes.append(z_concept)
        label_spikes.append(z_label)
    concept_spikes = torch.stack(concept_spikes)
    return SpikeRecord(concept_spikes, torch.stack(label_spikes), (concept_spikes * fan_out).sum(dim=(0, 2)))
