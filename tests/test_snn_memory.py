"""`memory=prototypes_snn memory.network=topk_currents` on real Norse neurons: it learns, protects what it does not
touch, reports and exports (the end-to-end network's tests are in test_snn_network.py)."""

import copy

import nir
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose
from neurocl.errors import ConfigError, DataError
from neurocl.snn import SpikingPrototypeMemory
from test_memory import clusters

NEURONS = {name: instantiate(compose(f"neuron={name}").neuron) for name in ("lif", "alif", "plif")}


def make(neuron="lif", **kwargs):
    options = dict(conditioning="none", backend="exact", similarity_threshold=0.9, top_k=5, seed=0,
                   network="topk_currents")
    return SpikingPrototypeMemory(16, 4, NEURONS[neuron], **{**options, **kwargs})


def stream(memory, x, y, classes_per_experience=2, batch=20):
    """Class-incremental: experience t holds classes 2t and 2t+1, observed in shuffled batches."""
    for t in range(len(y.unique()) // classes_per_experience):
        rows = torch.nonzero((y // classes_per_experience) == t).flatten()
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(t))]
        for i in range(0, len(rows), batch):
            memory.observe(x[rows[i:i + batch]], y[rows[i:i + batch]], experience=t)


@pytest.mark.parametrize("neuron", ["lif", "alif", "plif"])
def test_learns_separable_classes_and_abstains_before_training(neuron):
    memory = make(neuron)
    x, y = clusters(spread=0.2)
    assert memory.predict(x[:5]).abstained.all()
    stream(memory, x, y)
    prediction = memory.predict(x)
    assert (prediction.labels == y).float().mean() > 0.95
    assert {"confidence", "spikes", "sops", "prototype_ids"} <= set(prediction.evidence)
    stats = memory.stats()
    assert stats["concept_neurons"] == len(memory.store) and stats["spikes_per_query"] > 0
    energy = stats["energy"]
    assert energy["snn_pJ_per_query"] == pytest.approx(0.9 * stats["sops_per_query"])
    assert energy["dense_pJ_per_query"] == pytest.approx(4.6 * energy["dense_macs_per_query"])


def test_reward_sign_decides_the_direction_of_learning():
    x, y = clusters(spread=0.2)
    changes = {}
    for name, reward_correct in (("rewarded", 1.0), ("punished", -1.0)):
        memory = make(reward_correct=reward_correct, reward_wrong=reward_correct, recurrent=False)
        stream(memory, x[y < 2], y[y < 2])
        ids = torch.from_numpy(memory.store.ids)
        changes[name] = memory.synapses.label[ids].sum() - 0.5 * len(ids)  # vs. the initial weights
    assert changes["rewarded"] > 0 > changes["punished"]


def test_only_synapses_of_active_neurons_change():
    memory = make()
    x, y = clusters(spread=0.2)
    stream(memory, x[y < 2], y[y < 2])
    before = memory.synapses.state_dict()
    slots, _ = memory._candidates(x[y == 2][:10])
    memory._learn(x[y == 2][:10], y[y == 2][:10])
    untouched = torch.ones(len(before["label"]), dtype=torch.bool)
    untouched[slots.flatten()] = False
    assert torch.equal(memory.synapses.label[untouched], before["label"][untouched])
    assert torch.equal(memory.synapses.weight[untouched], before["weight"][untouched])


def test_no_blame_for_a_class_the_memory_has_never_seen():
    memory = make()
    x, y = clusters(spread=0.2)
    stream(memory, x[y < 2], y[y < 2])
    before = memory.synapses.state_dict()
    memory._learn(x[y == 2], y[y == 2])  # class 2 has no prototype yet: every answer is wrong, nobody is blamed
    assert torch.equal(memory.synapses.label, before["label"])


def test_plif_learns_membrane_time_constants():
    memory = make("plif")
    x, y = clusters(spread=0.3)
    stream(memory, x, y)
    tau = memory.synapses.tau_mem_inv[torch.from_numpy(memory.store.ids)]
    assert not torch.allclose(tau, torch.full_like(tau, 100.0))
    assert memory.stats()["tau_mem_ms"]["std"] > 0


def test_readouts_state_dict_and_nir_round_trip(tmp_path):
    memory = make(recurrent_plasticity={"w_max": 0.5})
    x, y = clusters(spread=0.2)
    stream(memory, x, y)
    assert set(memory.readouts()) == {"snn", "store"}
    again = make()
    again.load_state_dict(memory.state_dict())
    assert torch.equal(again.predict(x).scores, memory.predict(x).scores)

    path = tmp_path / "network.nir"
    nir.write(path, memory.to_nir())
    graph = nir.read(path)
    N = len(memory.store)
    assert set(graph.nodes) == {"input", "concept", "recurrent", "readout", "label", "output"}
    assert graph.metadata["network"] == "topk_currents"
    assert ("recurrent", "concept") in graph.edges and ("readout", "label") in graph.edges
    assert isinstance(graph.nodes["concept"], nir.CubaLIF) and graph.nodes["concept"].tau_mem.shape == (N,)
    ids = torch.from_numpy(memory.store.ids)
    assert np.allclose(graph.nodes["readout"].weight, memory.synapses.label[ids].T.numpy())
    assert np.allclose(graph.nodes["recurrent"].weight, memory.synapses.dense_recurrent(ids).numpy())
    with pytest.raises(ConfigError, match="adaptive"):
        make("alif").to_nir()


def test_bad_input_and_config_are_named():
    with pytest.raises(ConfigError, match="num_timesteps"):
        make(num_timesteps=0)
    with pytest.raises(ConfigError, match="top_k"):
        make(top_k=0)
    with pytest.raises(ConfigError, match="w_min"):
        make(label_plasticity={"w_min": 1.0, "w_max": 0.0})
    with pytest.raises(ConfigError, match="unknown keys"):
        make(recurrent_plasticity={"w_maxx": 1.0})
    memory = make()
    x, y = clusters()
    memory.observe(x, y)
    for bad in (float("nan"), float("inf")):
        x_bad = x[:4].clone()
        x_bad[1, 3] = bad
        with pytest.raises(DataError, match="NaN or inf"):
            memory.predict(x_bad)
        with pytest.raises(DataError, match="NaN or inf"):
            memory.observe(x_bad, y[:4])


def test_an_unknown_neuron_model_is_named():
    with pytest.raises(ConfigError, match="neuron"):
        SpikingPrototypeMemory(16, 4, neuron={"tau": 1.0}, backend="exact", network="topk_currents")


@pytest.mark.parametrize("plastic", ["new", "all"])
def test_consolidated_neurons_do_not_learn(plastic):
    memory = make(plastic_neurons=plastic)
    x, y = clusters(spread=0.2)
    stream(memory, x[y < 2], y[y < 2])
    old = torch.from_numpy(memory.store.ids)
    before = memory.synapses.state_dict()
    stream_rows = (y == 2) | (y == 3)
    memory.observe(x[stream_rows][:4], y[stream_rows][:4], experience=1)  # founds the first new neurons
    memory._learn(x, y)  # old classes' queries too: their neurons are active and rewarded
    unchanged = (torch.equal(memory.synapses.label[old], before["label"][old])
                 and torch.equal(memory.synapses.weight[old], before["weight"][old]))
    assert unchanged == (plastic == "new")  # positive control: with "all" the same queries change them


def test_an_unknown_plastic_neurons_value_is_named():
    with pytest.raises(ConfigError, match="plastic_neurons"):
        make(plastic_neurons="old")


def test_a_reward_per_neuron_punishes_the_wrong_labels_that_a_right_answer_rewards():
    x, y = clusters(spread=0.8)
    memory = make(recurrent=False, stdp_lr=0.05, plastic_neurons="all", similarity_threshold=0.5)
    stream(memory, x, y)
    right = (memory.predict(x).labels == y) & (y == 0)
    queries, labels = x[right], y[right]  # class 0, answered right: one reward per query is +1 for every neuron
    change = {}
    for reward_per in ("query", "neuron"):
        learner = copy.deepcopy(memory)
        learner.reward_per = reward_per
        before = learner.synapses.label.clone()
        learner._learn(queries, labels)
        change[reward_per] = learner.synapses.label - before
    # label 0 learns as with one reward per query; the wrong labels that spiked beside it, rewarded there
    # (the control), are punished here
    assert torch.allclose(change["neuron"][:, 0], change["query"][:, 0])
    assert change["query"][:, 1:].sum() > 0 > change["neuron"][:, 1:].sum()


def test_unknown_reward_assignment_is_refused():
    with pytest.raises(ConfigError, match="reward_per"):
        make(reward_per="synapse")


def test_an_experience_of_one_batch_teaches_the_network_only_in_chunks():
    x, y = clusters(spread=0.5)
    changed = {}
    for learn_batch_size in (None, 8):
        memory = make(recurrent=False, stdp_lr=0.05, learn_batch_size=learn_batch_size)
        stream(memory, x, y, batch=len(y))  # each experience arrives as one batch
        changed[learn_batch_size] = sum(row["neurons_changed"] for row in memory.plasticity_summary())
    assert changed[None] == 0  # control: a batch of new classes earns no reward, so nothing is learned
    assert changed[8] > 0
    with pytest.raises(ConfigError, match="learn_batch_size"):
        make(learn_batch_size=0)
