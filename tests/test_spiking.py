"""The spiking readout on Norse neurons: spikes follow input, labels follow weights, SOPs are counted."""

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from neurocl.errors import ConfigError, DataError
from neurocl.memory.spiking import simulate

LIF = instantiate(compose().neuron)
ALIF = instantiate(compose("neuron=alif").neuron)


def test_stronger_similarity_spikes_more_and_none_spikes_never():
    record = simulate(torch.tensor([[0.0, 0.3, 0.9]]), torch.zeros(2, 3), LIF, LIF, num_timesteps=50)
    counts = record.concept_spikes.sum(dim=0)[0]
    assert counts[0] == 0 and 0 < counts[1] < counts[2]


def test_labels_follow_the_concept_to_label_weights_and_sops_are_counted():
    weights = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 0.0]])  # concept 0 -> label 0, concept 1 -> label 1
    record = simulate(torch.tensor([[0.9, 0.0], [0.0, 0.9]]), weights, LIF, LIF, num_timesteps=40)
    counts = record.label_counts
    assert counts[0, 0] > 0 and counts[0, 1] == 0 and counts[1, 1] > 0 and counts[1, 0] == 0
    assert counts[:, 2].sum() == 0  # a label without synapses stays silent
    manual = record.concept_spikes.sum(dim=(0, 2))  # each concept neuron has exactly one synapse
    assert torch.equal(record.sops, manual)


def test_adaptive_threshold_spikes_less_than_lif_under_constant_drive():
    similarities = torch.tensor([[0.9]])
    lif = simulate(similarities, torch.zeros(1, 1), LIF, LIF, num_timesteps=100).concept_spikes.sum()
    alif = simulate(similarities, torch.zeros(1, 1), ALIF, LIF, num_timesteps=100).concept_spikes.sum()
    assert 0 < alif < lif


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="num_timesteps"):
        simulate(torch.zeros(1, 2), torch.zeros(1, 2), LIF, LIF, num_timesteps=0)
    with pytest.raises(DataError, match="NaN"):
        simulate(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 2), LIF, LIF)
