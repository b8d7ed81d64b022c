"""The spiking network on Norse neurons: spikes follow input, labels follow weights, recurrence completes patterns."""

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from neurocl.errors import ConfigError, DataError
from neurocl.snn.neurons import simulate

LIF = instantiate(compose().neuron)
ALIF = instantiate(compose("neuron=alif").neuron)


def no_labels(B, K, C=2):
    return torch.zeros(B, K, C)


def test_stronger_current_spikes_more_and_none_spikes_never():
    record = simulate(torch.tensor([[0.0, 0.3, 0.9]]), no_labels(1, 3), LIF, LIF, num_timesteps=50)
    counts = record.concept_spikes.sum(dim=0)[0]
    assert counts[0] == 0 and 0 < counts[1] < counts[2]


def test_labels_follow_the_concept_to_label_weights_and_sops_are_counted():
    w = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])  # concept 0 -> label 0, concept 1 -> label 1
    record = simulate(torch.tensor([[0.9, 0.0], [0.0, 0.9]]), w.expand(2, 2, 3), LIF, LIF, num_timesteps=40)
    counts = record.label_counts
    assert counts[0, 0] > 0 and counts[0, 1] == 0 and counts[1, 1] > 0 and counts[1, 0] == 0
    assert counts[:, 2].sum() == 0  # a label without synapses stays silent
    manual = record.concept_spikes.sum(dim=(0, 2))  # each concept neuron has exactly one synapse
    assert torch.equal(record.sops, manual)
    assert torch.allclose(record.label_drive[0], 3.0 * torch.tensor([manual[0], 0.0, 0.0]))


def test_recurrent_synapses_recruit_a_neuron_without_input():
    currents = torch.tensor([[0.9, 0.0]])
    alone = simulate(currents, no_labels(1, 2), LIF, LIF, num_timesteps=40)
    linked = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # post 1 <- pre 0
    completed = simulate(currents, no_labels(1, 2), LIF, LIF, num_timesteps=40, recurrent=linked)
    assert alone.concept_spikes[:, 0, 1].sum() == 0 and completed.concept_spikes[:, 0, 1].sum() > 0
    assert torch.equal(completed.sops, completed.concept_spikes[:, 0, 0].sum().reshape(1))  # one synapse, from 0


def test_per_neuron_membrane_time_constants_change_the_spiking():
    currents = torch.tensor([[0.5, 0.5]])
    record = simulate(currents, no_labels(1, 2), LIF, LIF, num_timesteps=50, tau_mem_inv=torch.tensor([[50.0, 500.0]]))
    slow, fast = record.concept_spikes.sum(dim=0)[0]
    assert fast > slow


def test_adaptive_threshold_spikes_less_than_lif_under_constant_drive():
    currents = torch.tensor([[0.9]])
    lif = simulate(currents, no_labels(1, 1), LIF, LIF, num_timesteps=100).concept_spikes.sum()
    alif = simulate(currents, no_labels(1, 1), ALIF, LIF, num_timesteps=100).concept_spikes.sum()
    assert 0 < alif < lif


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="num_timesteps"):
        simulate(torch.zeros(1, 2), no_labels(1, 2), LIF, LIF, num_timesteps=0)
    with pytest.raises(DataError, match="NaN"):
        simulate(torch.tensor([[float("nan"), 0.0]]), no_labels(1, 2), LIF, LIF)
