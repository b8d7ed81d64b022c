"""Reward-modulated STDP on hand-made spike trains."""

import pytest
import torch

from neurocl.errors import ConfigError
from neurocl.snn.plasticity import (RewardSTDPParameters, check_parameters, reward_stdp_initial_state,
                                       reward_stdp_step, reward_stdp_update)


def run(pre_times, post_times, steps=10, n_pre=2, n_post=1, p=RewardSTDPParameters()):
    """Neuron 0 of each side spikes at the given steps; the others stay silent."""
    state = reward_stdp_initial_state(1, n_pre, n_post)
    for t in range(steps):
        z_pre, z_post = torch.zeros(1, n_pre), torch.zeros(1, n_post)
        z_pre[0, 0] = float(t in pre_times)
        z_post[0, 0] = float(t in post_times)
        state = reward_stdp_step(z_pre, z_post, state, p)
    return state


W = torch.full((1, 2), 0.5)


def test_pre_before_post_potentiates_with_positive_reward_and_depresses_with_negative():
    state = run(pre_times={2}, post_times={4})
    assert state.eligibility[0, 0, 0] > 0
    assert reward_stdp_update(W, state, torch.tensor([1.0]))[0, 0] > 0.5
    assert reward_stdp_update(W, state, torch.tensor([-1.0]))[0, 0] < 0.5


def test_post_before_pre_has_negative_eligibility():
    state = run(pre_times={6}, post_times={3})
    assert state.eligibility[0, 0, 0] < 0
    assert reward_stdp_update(W, state, torch.tensor([1.0]))[0, 0] < 0.5


def test_zero_reward_changes_nothing_and_silent_synapses_never_change():
    state = run(pre_times={2}, post_times={4})
    assert torch.equal(reward_stdp_update(W, state, torch.tensor([0.0])), W)
    updated = reward_stdp_update(W, state, torch.tensor([1.0]))
    assert updated[0, 1] == W[0, 1]  # presynaptic neuron 1 never spiked


def test_without_modulation_the_rule_is_plain_stdp():
    p = RewardSTDPParameters(reward_modulation=False)
    state = run(pre_times={2}, post_times={4}, p=p)
    assert reward_stdp_update(W, state, torch.tensor([0.0]), p)[0, 0] > 0.5  # the reward is ignored


def test_bounds_and_normalisation_hold():
    state = run(pre_times=set(range(0, 10, 2)), post_times=set(range(1, 10, 2)))
    big = RewardSTDPParameters(lr=10.0)
    assert reward_stdp_update(W, state, torch.tensor([1.0]), big)[0, 0] == 1.0
    assert reward_stdp_update(W, state, torch.tensor([-1.0]), big)[0, 0] == 0.0
    capped = RewardSTDPParameters(lr=10.0, max_incoming=0.8)
    assert reward_stdp_update(W, state, torch.tensor([1.0]), capped).abs().sum() == pytest.approx(0.8)


def test_batch_rewards_act_on_their_own_queries():
    rewarded, punished = run(pre_times={2}, post_times={4}), run(pre_times={2}, post_times={4})
    both = type(rewarded)(*(torch.cat([a, b]) for a, b in zip(rewarded, punished)))
    assert torch.allclose(reward_stdp_update(W, both, torch.tensor([1.0, -1.0])), W)  # they cancel


def test_bad_parameters_are_named():
    with pytest.raises(ConfigError, match="w_min"):
        check_parameters(RewardSTDPParameters(w_min=1.0, w_max=0.0))
    with pytest.raises(ConfigError, match="stdp_lr"):
        check_parameters(RewardSTDPParameters(lr=-1.0))
    with pytest.raises(ConfigError, match="tau_pre_inv"):
        check_parameters(RewardSTDPParameters(tau_pre_inv=5000.0))


def test_a_reward_per_postsynaptic_neuron_moves_each_neuron_by_its_own_reward():
    state = reward_stdp_initial_state(1, 1, 2)
    for t in range(5):  # the presynaptic neuron at step 1, both postsynaptic ones at step 2: both eligible
        state = reward_stdp_step(torch.tensor([[float(t == 1)]]), torch.full((1, 2), float(t == 2)), state)
    W2 = torch.full((2, 1), 0.5)
    per_neuron = reward_stdp_update(W2, state, torch.tensor([[1.0, -1.0]]))
    assert per_neuron[0, 0] > 0.5 > per_neuron[1, 0]
    # control: one reward for the query moves both the same way
    shared = reward_stdp_update(W2, state, torch.tensor([1.0]))
    assert shared[0, 0] > 0.5 and shared[1, 0] > 0.5
