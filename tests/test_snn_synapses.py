"""The spiking memory's synapses follow the store's slots and keep the strongest recurrent inputs."""

import pytest
import torch

from neurocl.snn.plasticity import RewardSTDPParameters
from neurocl.snn.synapses import ConceptSynapses

RULE = RewardSTDPParameters(w_min=0.0, w_max=1.0)


def founded(n, fan_in=2, num_classes=3):
    synapses = ConceptSynapses(num_classes, initial_weight=0.5, fan_in=fan_in, tau_mem_inv=100.0)
    for j in range(n):
        synapses.founded(j, j % num_classes)
    return synapses


def test_a_new_concept_neuron_points_at_its_founding_label_and_merges_average_by_count():
    s = founded(3)
    assert torch.equal(s.label[:3], 0.5 * torch.eye(3))
    s.tau_mem_inv[1] = 400.0
    s.merged(0, 1, n_i=3, n_k=1)
    assert torch.allclose(s.label[0], torch.tensor([0.375, 0.125, 0.0]))
    assert s.tau_mem_inv[0] == 175.0
    s.copied(0, 5)
    assert torch.equal(s.label[5], s.label[0]) and len(s.label) >= 6


def test_recurrent_synapses_are_added_kept_strongest_and_bounded():
    s = founded(4, fan_in=2)
    slots = torch.tensor([[0, 1, 2, 3]])
    change = torch.zeros(1, 4, 4)
    change[0, 0, 1], change[0, 0, 2], change[0, 0, 3] = 0.3, 0.2, 0.9  # into neuron 0 from 1, 2, 3
    change[0, 1, 1] = 5.0  # self-connections are ignored
    s.add_recurrent(slots, change, RULE)
    dense = s.dense_recurrent(torch.arange(4))
    assert torch.allclose(dense[0], torch.tensor([0.0, 0.3, 0.0, 0.9]))  # fan_in 2: the weakest (0.2) lost
    assert dense[1:].abs().sum() == 0
    assert torch.equal(s.gather_recurrent(slots)[0], dense)
    s.add_recurrent(slots, change, RULE)  # existing synapses grow, to the bound
    assert torch.allclose(s.dense_recurrent(torch.arange(4))[0], torch.tensor([0.0, 0.6, 0.0, 1.0]))
    s.add_recurrent(slots, -change, RULE)  # depression never creates a synapse
    assert torch.allclose(s.dense_recurrent(torch.arange(4))[0], torch.tensor([0.0, 0.3, 0.0, 0.1]))


def test_a_reused_slot_drops_the_synapses_of_the_prototype_that_lived_there():
    s = founded(3)
    change = torch.zeros(1, 3, 3)
    change[0, 0, 1] = 0.4
    s.add_recurrent(torch.tensor([[0, 1, 2]]), change, RULE)
    assert s.recurrent_synapses(torch.arange(3)) == 1
    s.founded(1, 2)  # slot 1 now holds a new prototype
    assert s.recurrent_synapses(torch.arange(3)) == 0
    assert s.dense_recurrent(torch.arange(3)).abs().sum() == 0


def test_label_changes_land_on_the_given_slots_only_and_respect_bounds():
    s = founded(4)
    before = s.label.clone()
    change = torch.zeros(1, 2, 3)
    change[0, 0, 0], change[0, 1, 1] = 0.8, -0.8
    s.add_label(torch.tensor([[0, 1]]), change, RULE)
    assert s.label[0, 0] == 1.0 and s.label[1, 1] == 0.0  # clipped to [0, 1]
    assert torch.equal(s.label[2:], before[2:])  # neurons outside the query never change


def test_max_incoming_caps_each_label_neurons_total_input_on_the_production_path():
    capped = RULE._replace(max_incoming=1.2)
    change = torch.zeros(1, 4, 3)
    change[0, :, 0] = 0.4  # every concept neuron strengthens its synapse onto label 0
    s, free = founded(4), founded(4)
    s.add_label(torch.tensor([[0, 1, 2, 3]]), change, capped)
    free.add_label(torch.tensor([[0, 1, 2, 3]]), change, RULE)
    assert s.label[:4, 0].sum() == pytest.approx(1.2)  # the cap holds for the column (label 0's inputs)
    assert free.label[:4, 0].sum() > 1.2  # positive control: without max_incoming it does not
    assert torch.allclose(s.label[:4, 1:], free.label[:4, 1:])  # other labels' inputs are under the cap


def test_max_incoming_caps_recurrent_inputs_of_the_neurons_that_learned():
    capped = RULE._replace(max_incoming=0.5)
    s, free = founded(4, fan_in=3), founded(4, fan_in=3)
    change = torch.zeros(1, 4, 4)
    change[0, 0, 1:] = 0.4  # into neuron 0 from 1, 2, 3
    for synapses, rule in ((s, capped), (free, RULE)):
        synapses.add_recurrent(torch.tensor([[0, 1, 2, 3]]), change, rule)
    assert s.dense_recurrent(torch.arange(4))[0].sum() == pytest.approx(0.5)
    assert free.dense_recurrent(torch.arange(4))[0].sum() == pytest.approx(1.2)  # positive control
    assert s.dense_recurrent(torch.arange(4))[1:].abs().sum() == 0
