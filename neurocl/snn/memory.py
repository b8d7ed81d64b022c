"""`memory=prototypes_snn`: the prototype store read out by spiking neurons.

`network: end_to_end` (the default): the whole memory is one spiking network (neurocl/snn/network.py):
the search layer's synapses hold the store's conditioned prototypes, first-spike order and lateral
inhibition choose the top-k, and label integrators read the winners through synapses that hold each
prototype's label shares. What learns, and where a chip could do it:

    founding a prototype          one-shot imprinting of a new search neuron's synapses    local
    absorbing a sample            EMA (instar) update of the winner's synapses             local
    label association             Hebbian counts, read as shares                           local
    whitening refresh, Ward merges, splits, pruning under the budget                     host maintenance

The network holds the readout the store chooses on held-out data (`readout: auto`, as memory=prototypes
chooses, among the readouts a network can hold): the top-k vote (a search neuron per prototype), the class
statistics, LDA or the whitened nearest class mean (a class neuron per class whose synapses hold the
discriminant with the within-class whitening folded in; the first to fire answers), or kernel ridge (a
search neuron per prototype; every one fires once, the least similar first, and leaky label integrators
behind synapses that hold the ridge coefficients read the Gaussian kernel from the spike times). The class
statistics' refresh and the ridge solve are host maintenance like the whitening's. int8 rounds each layer
to 8 bits on a per-layer scale; kernel ridge's coefficients cancel each other, so its two layers are
rounded with error compensation under the store's own statistics (kernel_int8) instead of one by one.

`network: topk_currents` is the earlier readout, kept for its studies: the host searches, and the
top-k similarities drive an attractor network that learns by reward-modulated STDP (below).

topk_currents: one concept neuron per prototype (the population follows the store's slots
through foundings, merges and splits) and one label neuron per class. A query's
top-k prototypes drive their concept neurons with the current

    gain * exp((s_k - s_1) / temperature)           (s_1: the best similarity)

so the nearest prototype always fires and farther ones fire less, as in the
store's own softmax vote. Recurrent concept->concept synapses, learned from
co-activation, let strongly linked prototypes recruit each other (attractors
that complete a partial pattern); concept->label synapses carry the
associations. Scores are label spike counts, ties broken by the summed label
input (the membrane's evidence).

Learning is test-then-train: each training batch is first answered by the
network, then its reward (+1 right winner, -1 wrong winner, 0 silent) turns
the eligibility traces of reward-modulated STDP into weight changes, and only
then does the store absorb the batch. With `reward_per="neuron"` each label
neuron gets its own reward (reward_correct for the query's label, reward_wrong
for the others), and each concept neuron by its prototype's majority label.
With `plastic_neurons="new"` only concept neurons founded in the current
experience learn (older ones are consolidated). With
`reward_modulation: false` a teacher current drives the right label neuron
and plain STDP applies. A class's first batch earns no reward (the store
holds none of it yet), so an experience of one batch teaches nothing.
"""

import math
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from norse.torch.functional.lsnn import LSNNParameters

from neurocl.errors import ConfigError
from neurocl.memory.base import Prediction, check_batch, prediction_from_scores, warn_held_back
from neurocl.memory import readouts as store_readouts
from neurocl.memory.prototypes import PrototypeMemory
from neurocl.snn.plasticity import (RewardSTDPParameters, check_parameters, reward_stdp_change,
                                    reward_stdp_initial_state, reward_stdp_step)
from neurocl.snn.neurons import (ParametricLIFParameters, base_parameters, check_timesteps, initial_state,
                                 simulate)
from neurocl.snn.synapses import ConceptSynapses
from neurocl.snn import network as e2e
from neurocl.snn.nir_graph import ANSWER_AT_END_GATE, ANSWER_AT_FIRST_SPIKE, ANSWER_AT_LAST_STEP, FORMAT, cuba_li, cuba_lif

# Energy conventions (45 nm): a synaptic operation 0.9 pJ (an accumulate), a multiply-accumulate 4.6 pJ
# (Horowitz, ISSCC 2014), as used across the SNN literature to compare with the equivalent dense network.
PJ_PER_SOP, PJ_PER_MAC = 0.9, 4.6
NETWORKS = ("end_to_end", "topk_currents")
# The store's readouts the end-to-end network holds as synapses: the top-k vote (a search neuron per prototype),
# the class statistics (a neuron per class; the first to fire answers: the discriminant's argmax), and kernel ridge
# (a search neuron per prototype, every one fires; leaky label integrators read the kernel from the spike times).
NETWORK_READOUTS = ("vote", "lda", "whitened_ncm", "kernel_ridge")
CLASS_CLOCK = 10
KERNEL_CLOCK = 4     # kernel ridge's clock runs this many times finer than the vote's: a spike step moves its kernel
                     # value by exp(-1 / (ramp_steps * scale)), 0.5% at 400 steps (1 - 2% of answers move at 100)
KERNEL_MARGIN = 10   # steps past 4 ramp_steps, where the most similar prototype (s = 1) fires
QUERY_BLOCK = 64     # queries whose (block x prototypes) similarities and spike steps are worked on at once: in cache
INT8_DAMP = 0.01     # compensated int8 rounding: the Hessian's diagonal is damped by this share of its mean
CLOCK_HEADROOM = 2.0  # the class layers' clock starts at this many times their prototypes' best score (at most 1)


class Layers(NamedTuple):
    """The end-to-end network's synapses for the chosen readout."""
    family: str               # vote | lda | whitened_ncm | kernel_ridge
    slots: torch.Tensor       # (N,) what each search neuron stands for: a prototype slot (vote) or a class
    search: torch.Tensor      # (N, d') input synapses
    label: torch.Tensor       # (N, C) synapses onto the label neurons
    parameters: e2e.NetworkParameters
    input: str                # what the host computes before the network (for the NIR metadata)
    bias_line: float = 0.0    # lda: the value of the input's bias line (beta)
    kernel_scale: float = 0.0  # kernel_ridge: the Gaussian kernel's scale (the label integrators' leak follows it)
TOPK_CURRENTS_TIMESTEPS = 20
WEIGHTS = ("float32", "int8")
# Energy per operation at 45 nm (Horowitz, ISSCC 2014): fp32 add 0.9 pJ, fp32 multiply 3.7 pJ; int8 add 0.03 pJ,
# int8 multiply 0.2 pJ. A MAC is a multiply and an add; a synaptic operation or a neuron-state update an add.
PJ = {"float32": {"add": 0.9, "mac": 4.6}, "int8": {"add": 0.03, "mac": 0.23}}
REWARD_PER = ("query", "neuron")  # one reward per query (its winner right or wrong), or one per postsynaptic neuron
# The plasticity rules' defaults (read-only; RewardSTDPParameters gives the keys left out): label synapses in [0, 1];
# recurrent ones in [0, 0.5] with half the depression and at most 2.0 of input per neuron (conf/memory/prototypes_snn)
LABEL_PLASTICITY = MappingProxyType({"w_min": 0.0, "w_max": 1.0, "eta_plus": 1.0, "eta_minus": 1.0})
RECURRENT_PLASTICITY = MappingProxyType({"w_min": 0.0, "w_max": 0.5, "eta_plus": 1.0, "eta_minus": 0.5,
                                         "max_incoming": 2.0})


def plasticity_rule(key: str, options: dict | None, shared: dict) -> RewardSTDPParameters:
    """A rule's parameters from its config dict; `shared` (lr, modulation, dt) come from the memory's own keys."""
    options = dict(options or {})
    allowed = set(RewardSTDPParameters._fields) - set(shared)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"memory.{key}", unknown, f"unknown keys; the rule takes {sorted(allowed)}",
                          "remove or correct them (stdp_lr and reward_modulation are keys of the memory)")
    return check_parameters(RewardSTDPParameters(**options, **shared))


class SpikingPrototypeMemory(PrototypeMemory):
    def __init__(self, dim: int, num_classes: int, neuron, top_k: int = 10, temperature: float = 0.1,
                 network: str = "end_to_end", weights: str = "float32", search_gain: float = 40.0,
                 ramp_steps: int = 100, window: float | None = None, label_stages: int = 4,
                 num_timesteps: int | None = None, input_gain: float = 2.0, recurrent: bool = True,
                 recurrent_fan_in: int = 32, stdp_lr: float = 0.001, reward_modulation: bool = True,
                 reward_correct: float = 1.0, reward_wrong: float = -1.0, reward_per: str = "query",
                 teacher_current: float = 1.0,
                 initial_label_weight: float = 0.5, label_plasticity: dict | None = LABEL_PLASTICITY,
                 recurrent_plasticity: dict | None = RECURRENT_PLASTICITY, plastic_neurons: str = "new", dt: float = 1e-3,
                 learn_batch_size: int | None = None, readout: str = "auto", **store_options):
        if network not in NETWORKS:
            raise ConfigError("memory.network", network, f"one of {NETWORKS}", "set memory.network=end_to_end")
        if network == "topk_currents" and readout == "auto":
            readout = "vote"  # the only readout its network has
        families = NETWORK_READOUTS if network == "end_to_end" else ("vote",)
        if readout not in ("auto", *families):
            raise ConfigError("memory.readout", readout, f"the {network} network reads out one of {families}",
                              f"set memory.readout=auto (the best of {families} on held-out data)")
        super().__init__(dim, num_classes, top_k, temperature, readout=readout, **store_options)
        if weights not in WEIGHTS:
            raise ConfigError("memory.weights", weights, f"one of {WEIGHTS}", "set memory.weights=float32")
        if network == "end_to_end" and type(neuron).__name__ != "LIFParameters":
            raise ConfigError("neuron", type(neuron).__name__, "the end-to-end network has its own LIF populations",
                              "use neuron=lif, or memory.network=topk_currents for alif and plif")
        if weights == "int8" and network != "end_to_end":
            raise ConfigError("memory.weights", weights, "int8 weights are an option of the end-to-end network",
                              "set memory.network=end_to_end or memory.weights=float32")
        self.network, self.weights = network, weights
        if num_timesteps is None:
            num_timesteps = e2e.NetworkParameters().num_timesteps if network == "end_to_end" else TOPK_CURRENTS_TIMESTEPS
        check_timesteps(num_timesteps)
        self.network_parameters = e2e.check_network(e2e.NetworkParameters(
            top_k=top_k, search_gain=search_gain, ramp_steps=ramp_steps, label_stages=label_stages,
            window=e2e.fitted_window(temperature, label_stages) if window is None else window,
            num_timesteps=num_timesteps, dt=dt)) if network == "end_to_end" else None
        if input_gain <= 0:
            raise ConfigError("memory.input_gain", input_gain, "must be positive", "set memory.input_gain=2.0")
        initial_state(neuron, (0,), torch.zeros(0))  # a neuron model we can step, or a ConfigError naming it
        self.neuron, self.label_neuron = neuron, base_parameters(neuron)
        self.plif = isinstance(neuron, ParametricLIFParameters)
        self.num_timesteps, self.input_gain, self.dt = num_timesteps, input_gain, dt
        self.reward_modulation, self.reward_correct, self.reward_wrong = reward_modulation, reward_correct, reward_wrong
        self.teacher_current = teacher_current
        if learn_batch_size is not None and (not isinstance(learn_batch_size, int) or learn_batch_size < 1):
            raise ConfigError("memory.learn_batch_size", learn_batch_size, "must be a positive integer or null",
                              "set memory.learn_batch_size=null (learn from each observe batch as a whole)")
        self.learn_batch_size = learn_batch_size
        if reward_per not in REWARD_PER:
            raise ConfigError("memory.reward_per", reward_per, f"one of {REWARD_PER}", "set memory.reward_per=query")
        self.reward_per = reward_per
        if plastic_neurons not in ("all", "new"):
            raise ConfigError("memory.plastic_neurons", plastic_neurons, "must be all or new",
                              "set memory.plastic_neurons=all")
        self.plastic_neurons = plastic_neurons
        shared = {"lr": stdp_lr, "reward_modulation": reward_modulation, "dt": dt}
        self.label_rule = plasticity_rule("label_plasticity", label_plasticity, shared)
        self.recurrent_rule = plasticity_rule("recurrent_plasticity", recurrent_plasticity, shared) if recurrent else None
        self.synapses = ConceptSynapses(num_classes, initial_label_weight, recurrent_fan_in,
                                        float(neuron.lif.tau_mem_inv) if self.plif else None)
        self.store.listeners.append(self.synapses)
        self.activity = {"queries": 0, "candidates": 0, "concept_spikes": 0.0, "label_spikes": 0.0, "sops": 0.0,
                         "steps": 0.0, "silent": 0, "label_synapses_used": 0.0}
        self.plasticity = []  # one entry per experience: which label synapses learning touched
        self._layers = None  # (the store's fit, (weights, network parameters), the end-to-end network's layers for them)
        self._seen_classes, self._experience, self._experience_start = set(), None, 0

    # -- the network ---------------------------------------------------------------------------
    def _candidates(self, features: torch.Tensor):
        ids, sims = self.store.search(features.float().numpy(), self.top_k)
        sims = torch.from_numpy(sims).float()
        currents = self.input_gain * torch.exp((sims - sims[:, :1]) / self.temperature)
        return torch.from_numpy(ids), currents

    def _simulate(self, slots, currents, label_current=None, log_tau=None):
        recurrent = self.synapses.gather_recurrent(slots) if self.recurrent_rule is not None else None
        tau = None
        if self.plif:
            tau = (log_tau if log_tau is not None else self.synapses.tau_mem_inv[slots].log()).exp()
        return simulate(currents, self.synapses.gather_label(slots), self.neuron, self.label_neuron,
                        self.num_timesteps, recurrent, tau, label_current, self.dt)

    @staticmethod
    def _scores(record) -> torch.Tensor:
        drive = record.label_drive.detach()
        return record.label_counts.detach() + 0.5 * drive / drive.amax(dim=1, keepdim=True).clamp(min=1e-12)

    # -- the end-to-end network ----------------------------------------------------------------
    def _families(self) -> list[str]:
        return [f for f in super()._families() if f in NETWORK_READOUTS] or ["vote"]

    def network_layers(self) -> Layers:
        """The synapses the network holds for the store's chosen readout, built once per fit of the store, weights
        and network parameters (kept until one changes: int8 kernel ridge takes seconds to round)."""
        fit, settings = self._current_fit(), (self.weights, self.network_parameters)
        if self._layers is None or self._layers[0] is not fit or self._layers[1] != settings:
            self._layers = (fit, settings, self._build_layers())
        return self._layers[2]

    def _build_layers(self) -> Layers:
        """The synapses for the store's chosen readout; int8: rounded to 8 bits.

        vote: one search neuron per prototype (the store's conditioned prototypes), label synapses = its label
        shares. lda / whitened_ncm: one search neuron per known class; the within-class whitening
        r = s * V^T (x - mean) is linear, so it folds into the synapses: a_c . r = (V s a_c) . (x - mean), a_c the
        whitened class mean (whitened_ncm: its unit vector). The input is the centred query (lda: with a bias line
        of value beta), unit norm; lda's row is [V s a_c, (b - |a_c|^2 / 2) / beta], b the mean of |a_c|^2 / 2 (a
        constant for every class: the argmax stays LDA's, the bias synapses stay small for 8 bits); beta the
        stored statistics' typical |x - mean|, sqrt(trace(within) + mean_c |m_c - mean|^2), so that the bias line
        weighs like the query. Scores are the discriminants over positive per-query factors: the first class
        neuron to fire is the readout's argmax (top_k 1). Their clock runs CLASS_CLOCK times finer than the vote's
        and starts at CLOCK_HEADROOM times the best score of the store's own prototypes (clock_skip steps in).
        kernel_ridge: one search neuron per prototype with synapses -p_j (the store's unit-norm prototypes in kernel
        ridge's space, memory.kernel_space),
        label synapses = its ridge coefficients, read by leaky integrators (neurocl/snn/network.py)."""
        family, *values = self.chosen.split(":")
        bias_line = 0.0
        if family == "kernel_ridge":
            return self._kernel_layers(self._current_fit()[0])
        if family == "vote":
            slots = self.store.ids
            search = torch.from_numpy(self.store.conditioned(slots)).float()
            counts = torch.from_numpy(self.store.label_counts[slots].astype(np.float32))
            label = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
            parameters, described = self.network_parameters, "z = the store's conditioning of the query (centre, " \
                "whiten, unit norm)"
        else:
            c = self.store.conditioner
            slots = torch.nonzero(self.known_classes()).flatten().numpy()
            eigenvalues, vectors = self._eigen()
            scale = store_readouts.shrunk_eigenvalues(eigenvalues, float(values[0])).rsqrt()
            centred = torch.from_numpy(c.class_means[slots]).double() - torch.from_numpy(c.mean).double()
            means = (centred @ vectors) * scale  # a_c
            if family == "lda":
                half = 0.5 * (means * means).sum(dim=1, keepdim=True)
                bias_line = float(torch.sqrt(torch.trace(c.within_covariance()) + (centred ** 2).sum(dim=1).mean()))
                search = torch.cat([(means * scale) @ vectors.T, (half.mean() - half) / bias_line], dim=1)
            else:
                search = (F.normalize(means, dim=1) * scale) @ vectors.T
            search = (search / search.norm(dim=1).max().clamp(min=1e-12)).float()
            label = F.one_hot(torch.from_numpy(slots), self.num_classes).float()
            p = self.network_parameters
            # a class neuron per class: a clock CLASS_CLOCK times finer (close discriminants still fire apart) costs
            # C neurons that many more steps, not N
            ramp = CLASS_CLOCK * p.ramp_steps
            parameters = p._replace(top_k=1, label_stages=1, ramp_steps=ramp, window=1.0 / (2 * ramp),
                                    num_timesteps=CLASS_CLOCK * p.num_timesteps)
            described = f"z = {'[x - mean, beta]' if family == 'lda' else 'x - mean'}, unit norm (mean: the store's " \
                f"running mean{f'; beta = {bias_line:.6g}' if family == 'lda' else ''}); the within-class whitening " \
                f"(shrinkage {values[0]}) of the store's class statistics is folded into the search synapses"
        if self.weights == "int8":
            search, label = quantize_int8(search), quantize_int8(label)
        layers = Layers(family, torch.as_tensor(slots), search, label, parameters, described, bias_line)
        if family == "vote":
            return layers
        # the class scores lie far below 1 (unit query, folded rows): the clock starts at CLOCK_HEADROOM times the
        # largest score of the store's own prototypes instead of at 1, so no step waits for a score nobody has
        ids = self.store.ids
        top = float((self.network_input(torch.from_numpy(self.store.means[ids]).float(), layers) @ search.T).max())
        skip = int(np.floor((1.0 - min(1.0, CLOCK_HEADROOM * max(top, 0.0))) * parameters.ramp_steps))
        return layers._replace(parameters=parameters._replace(clock_skip=skip))

    def _kernel_layers(self, fitted) -> Layers:
        prototypes, coefficients = fitted.prototypes, fitted.coefficients
        if self.weights == "int8":
            prototypes, coefficients = kernel_int8(fitted, torch.from_numpy(self.store.counts[self.store.ids]))
        p = self.network_parameters
        ramp = KERNEL_CLOCK * p.ramp_steps
        # every search neuron fires once, the last (s = 1) about 4 ramp steps in; top_k: all of them take part
        parameters = p._replace(top_k=len(prototypes), label_stages=1, ramp_steps=ramp, window=1.0 / (2 * ramp),
                                num_timesteps=4 * ramp + KERNEL_MARGIN, clock_skip=0)
        space = "the store's conditioning of the query (centre, whiten, unit norm)" \
            if self.kernel_space == "conditioned" else "x - mean, unit norm (mean: the store's running mean)"
        described = f"z = {space}; the search synapses hold minus the prototypes in that space, so the least " \
            "similar fires first"
        return Layers("kernel_ridge", torch.as_tensor(self.store.ids), -prototypes, coefficients, parameters,
                      described, kernel_scale=float(fitted.scale))

    def network_input(self, features, layers: Layers | None = None) -> torch.Tensor:
        """The query as the network's input, computed on the host (NIR has no normalisation node)."""
        layers = layers or self.network_layers()
        if layers.family == "vote":
            return torch.from_numpy(self.store.conditioner.transform(features.float().numpy())).float()
        if layers.family == "kernel_ridge":
            return self.kernel_input(features.float().numpy()).float()
        z = features.float() - torch.from_numpy(self.store.conditioner.mean).float()
        if layers.family == "lda":
            z = torch.cat([z, torch.full((len(z), 1), layers.bias_line)], dim=1)
        return F.normalize(z, dim=1)

    def run_network(self, features):
        """(record over each query's simulated search neurons, their columns in the layers (-1 past a query's
        own), the layers)."""
        layers = self.network_layers()
        record, columns = e2e.simulate_search(self.network_input(features, layers) @ layers.search.T, layers.label,
                                              layers.parameters)
        return record, columns, layers

    def run_kernel(self, features, layers: Layers) -> e2e.KernelRecord:
        """Kernel ridge's network for the queries (layers from network_layers)."""
        z = self.network_input(features, layers)
        return e2e.run_kernel_layer(-(z @ layers.search.T), layers.label, layers.parameters, layers.kernel_scale)

    def _predict_kernel(self, features, layers: Layers) -> Prediction:
        p = layers.parameters
        synapses = (layers.label != 0).sum(dim=1).float()  # the label synapses a search neuron's spike reaches
        k = min(self.top_k, len(layers.slots))
        potentials, columns, spikes, readout = [], [], [], []
        for block in features.split(QUERY_BLOCK):
            record = self.run_kernel(block, layers)
            fired = (record.fire_step >= 0).float()
            potentials.append(record.label_potential)
            spikes.append(fired.sum(dim=1))
            readout.append(fired @ synapses)
            # evidence: the nearest prototypes, the network's last top_k to fire (one that never fired: nearer still)
            columns.append(torch.where(record.fire_step < 0, p.num_timesteps, record.fire_step).topk(k, dim=1).indices)
        scores, spikes, readout, columns = (torch.cat(part) for part in (potentials, spikes, readout, columns))
        silent = spikes == 0
        seen = self.known_classes()
        shares = scores[:, seen].clamp(min=0)
        confidence = shares.max(dim=1).values / shares.sum(dim=1).clamp(min=1e-12)  # the winner's share, as the store
        scores[:, ~seen] = float("-inf")
        scores[silent] = float("-inf")
        answered = scores.argmax(dim=1)
        # the answer's support: the evidence whose synapse onto the answered label is positive
        evidence_ids = torch.as_tensor(layers.slots)[columns]
        held = layers.label[columns, answered[:, None]] > 0
        steps = torch.where(silent, 0, p.num_timesteps).double()
        sops = (readout + spikes).double()  # each spike reaches its label synapses and itself (self-inhibition)
        self._add_activity(spikes.double(), torch.zeros_like(steps), sops, steps, silent, readout.double())
        answer_step = torch.where(silent, -1, p.num_timesteps - 1)
        return prediction_from_scores(scores, {"prototype_ids": evidence_ids, "confidence": confidence,
                                               "spikes": spikes, "sops": sops.float(),
                                               "winner_spikes": held.sum(dim=1), "answer_step": answer_step})

    def _add_activity(self, search_spikes, label_spikes, sops, steps, silent, readout):
        a = self.activity
        a["queries"] += len(steps)
        a["candidates"] += int(search_spikes.sum())
        a["concept_spikes"] += float(search_spikes.sum())
        a["label_spikes"] += float(label_spikes.sum())
        a["sops"] += float(sops.sum())
        a["steps"] += float(steps.sum())
        a["silent"] += int(silent.sum())
        a["label_synapses_used"] += float(readout.sum())

    def _predict_end_to_end(self, features) -> Prediction:
        layers = self.network_layers()
        if layers.family == "kernel_ridge":
            return self._predict_kernel(features, layers)
        record, columns, layers = self.run_network(features)
        scores = record.label_potential.clone()
        seen = self.known_classes()
        scores[:, ~seen] = 0.0
        confidence = scores.max(dim=1).values / scores.sum(dim=1).clamp(min=1e-12)  # the winner's share
        scores[:, ~seen] = float("-inf")
        scores[record.silent] = float("-inf")  # no search neuron fired: abstain
        # the winners, first to fire first
        order = torch.where(record.winners, record.first_spike, torch.iinfo(torch.long).max).argsort(dim=1, stable=True)
        k = layers.parameters.top_k
        winners = torch.where(record.winners.gather(1, order)[:, :k], columns.gather(1, order)[:, :k], -1)
        cost = self._network_cost(record, winners, layers)
        # the answered label's support (composer=spikes): winners (one spike each) with a synapse onto it
        answered = scores.argmax(dim=1)
        held = (layers.label[winners.clamp(min=0), answered[:, None]] > 0) & (winners >= 0)
        if layers.family == "vote":
            evidence_ids = torch.where(winners >= 0, layers.slots[winners.clamp(min=0)], -1)
        else:  # a class neuron answered: the nearest prototypes, from the store's search, are the evidence shown
            evidence_ids = torch.from_numpy(self.store.search(features.float().numpy(), self.top_k)[0])
        return prediction_from_scores(scores, {"prototype_ids": evidence_ids, "confidence": confidence,
                                               "spikes": cost["spikes"], "sops": cost["sops"],
                                               "winner_spikes": held.sum(dim=1), "answer_step": record.answer_step})

    def _network_cost(self, record, winners, layers: Layers) -> dict:
        """Per query: spikes, spike-driven synaptic operations, steps to the answer; added to the activity."""
        N = len(layers.search)
        steps = (record.answer_step + 1).clamp(min=0).to(torch.float64)
        fired = (record.first_spike >= 0).sum(dim=1).to(torch.float64)
        gate_on = (record.gate_step >= 0).long()  # the k-gate fires once
        first = torch.where(record.first_spike >= 0, record.first_spike, torch.iinfo(torch.long).max).amin(dim=1)
        start_on = torch.where(record.answer_step >= 0, record.answer_step - first + 1, 0)
        gate_spikes = (gate_on + start_on + (record.answer_step >= 0).long()).to(torch.float64)
        fan_out = (layers.label[winners.clamp(min=0)] != 0).sum(dim=2).to(torch.float64) * (winners >= 0)
        readout = fan_out.sum(dim=1)
        # a search spike reaches itself (self-inhibition), the count line and its label synapses; the k-gate's
        # spikes reach all N search neurons; the start gate's reach the end gate
        sops = readout + 2 * fired + gate_on.to(torch.float64) * N + start_on.to(torch.float64)
        self._add_activity(fired, gate_spikes, sops, steps, record.silent, readout)
        return {"spikes": (fired + gate_spikes).float(), "sops": sops.float()}

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        warn_held_back(self, sum(len(h[1]) for h in self.held_out))
        if len(self.store) == 0:
            return prediction_from_scores(torch.full((len(features), self.num_classes), float("-inf")))
        if self.network == "end_to_end":
            return self._predict_end_to_end(features)
        slots, currents = self._candidates(features)
        with torch.no_grad():
            record = self._simulate(slots, currents)
        scores = self._scores(record)
        silent = record.label_drive.sum(dim=1) == 0
        seen = self.known_classes()
        scores[:, ~seen] = 0.0
        # Spike-count confidence: the winner's share of the label spikes (of the label input when none spiked).
        confidence = scores.max(dim=1).values / scores.sum(dim=1).clamp(min=1e-12)
        scores[:, ~seen] = float("-inf")
        scores[silent] = float("-inf")  # no concept neuron reached a label: abstain
        counts = record.label_counts
        self._count(record, slots)
        spikes = record.concept_spikes.sum(dim=(0, 2)) + counts.sum(dim=1)
        return prediction_from_scores(scores, {"prototype_ids": slots, "confidence": confidence,
                                               "winner_spikes": counts.max(dim=1).values,
                                               "spikes": spikes, "sops": record.sops})

    def _count(self, record, slots):
        a = self.activity
        a["queries"] += slots.shape[0]
        a["candidates"] += slots.numel()
        a["concept_spikes"] += float(record.concept_spikes.sum())
        a["label_spikes"] += float(record.label_spikes.sum())
        a["sops"] += float(record.sops.sum())

    # -- learning ------------------------------------------------------------------------------
    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        if experience != self._experience:
            self._start_experience(experience)
        if self.network == "end_to_end":  # stats() then describe the memory as it is now
            self.activity = dict.fromkeys(self.activity, 0)
        ids = torch.arange(len(labels)) if ids is None else torch.as_tensor(ids)
        size = self.learn_batch_size or len(labels)  # test-then-train in chunks: later chunks learn from earlier ones
        for start in range(0, len(labels), size):
            chunk = slice(start, start + size)
            if len(self.store) > 0 and self.network == "topk_currents":  # end_to_end: the store's own rules
                self._learn(features[chunk], labels[chunk])
            super().observe(features[chunk], labels[chunk], experience, ids[chunk])
        self._seen_classes.update(labels.unique().tolist())

    def _learn(self, features, labels):
        slots, currents = self._candidates(features)
        teacher = None if self.reward_modulation else self.teacher_current * F.one_hot(labels, self.num_classes).float()
        log_tau = self.synapses.tau_mem_inv[slots].log().requires_grad_() if self.plif else None
        with torch.set_grad_enabled(self.plif):
            record = self._simulate(slots, currents, teacher, log_tau)
        if self.plif:
            self._learn_tau(slots, log_tau, record, labels)
        concept, label = record.concept_spikes.detach(), record.label_spikes.detach()
        winner = self._scores(record).argmax(dim=1)
        # No reward where nothing reached a label, nor where the right answer was impossible: a class with no
        # prototype yet (its first batch).
        withheld = (record.label_drive.sum(dim=1) == 0) | ~self.known_classes()[labels]
        reward = torch.where(winner == labels, self.reward_correct, self.reward_wrong).masked_fill(withheld, 0.0)
        label_reward = recurrent_reward = reward
        if self.reward_per == "neuron":  # each neuron is rewarded for its own label, not for the winner's
            label_reward = self._reward_per_neuron(torch.arange(self.num_classes).expand(len(labels), -1), labels)
            recurrent_reward = self._reward_per_neuron(torch.from_numpy(self.store.majority(slots.numpy())), labels)
            label_reward = label_reward.masked_fill(withheld[:, None], 0.0)
            recurrent_reward = recurrent_reward.masked_fill(withheld[:, None], 0.0)
        B, K = slots.shape
        state = reward_stdp_initial_state(B, K, self.num_classes)
        for t in range(self.num_timesteps):
            state = reward_stdp_step(concept[t], label[t], state, self.label_rule)
        # plastic_neurons=new: only concept neurons founded in this experience learn (older ones are consolidated);
        # ages are 1-based steps, so the last neuron of the previous experience has age == _experience_start
        plastic = (torch.from_numpy(self.store.age[slots.numpy()] > self._experience_start)
                   if self.plastic_neurons == "new" else torch.ones_like(slots, dtype=torch.bool))
        change = reward_stdp_change(state, label_reward, self.label_rule).transpose(1, 2) * plastic[:, :, None]  # (B, K, C)
        self.synapses.add_label(slots, change, self.label_rule)
        self._log_change(slots, change)
        if self.recurrent_rule is not None:
            state = reward_stdp_initial_state(B, K, K)
            for t in range(self.num_timesteps):
                state = reward_stdp_step(concept[t], concept[t], state, self.recurrent_rule)
            change = reward_stdp_change(state, recurrent_reward, self.recurrent_rule) * plastic[:, :, None]  # (B, K_post, K_pre)
            self.synapses.add_recurrent(slots, change, self.recurrent_rule)

    def _reward_per_neuron(self, neuron_labels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N): reward_correct for a neuron of the query's own label (a label neuron, or a concept neuron
        whose prototype is mostly of it), reward_wrong for the others (silent ones have no eligibility)."""
        return torch.where(neuron_labels == labels[:, None], self.reward_correct, self.reward_wrong)

    def _learn_tau(self, slots, log_tau, record, labels):
        """plif: one gradient step on each candidate's log membrane rate (surrogate gradients, Norse's SuperSpike)."""
        loss = F.cross_entropy(record.label_counts, labels)
        (grad,) = torch.autograd.grad(loss, log_tau)
        p = self.neuron
        step = torch.zeros_like(self.synapses.tau_mem_inv).index_add_(0, slots.reshape(-1), grad.reshape(-1))
        updated = self.synapses.tau_mem_inv * torch.exp(-p.tau_lr * step)
        self.synapses.tau_mem_inv = updated.clamp(p.tau_mem_inv_min, min(p.tau_mem_inv_max, 1 / self.dt))

    def _start_experience(self, experience: int):
        self._experience, self._experience_start = experience, self.store.step
        self.plasticity.append({"experience": experience, "old_classes": sorted(self._seen_classes),
                                "abs_change_old": 0.0, "abs_change_new": 0.0, "changed": set()})

    def _log_change(self, slots, change):
        """Who learned: label-synapse change on concept neurons of old classes (seen before) vs new ones."""
        entry = self.plasticity[-1]
        magnitude = change.abs().sum(dim=2)  # (B, K)
        old = torch.from_numpy(np.isin(self.store.majority(slots.numpy()), entry["old_classes"]))
        entry["abs_change_old"] += float(magnitude[old].sum())
        entry["abs_change_new"] += float(magnitude[~old].sum())
        entry["changed"].update(slots[magnitude > 0].tolist())

    def plasticity_summary(self) -> list[dict]:
        rows = []
        ids = self.store.ids
        majority = self.store.majority(ids)
        for entry in self.plasticity:
            old_neurons = set(ids[np.isin(majority, entry["old_classes"])].tolist())
            total = entry["abs_change_old"] + entry["abs_change_new"]
            rows.append({"experience": entry["experience"],
                         "old_class_neurons_now": len(old_neurons),
                         "old_class_neurons_changed": len(entry["changed"] & old_neurons),
                         "old_class_share_of_change": entry["abs_change_old"] / total if total else 0.0,
                         "neurons_changed": len(entry["changed"])})
        return rows

    # -- reporting -----------------------------------------------------------------------------
    def stats(self) -> dict:
        if self.network == "end_to_end":
            return self._stats_end_to_end()
        a = self.activity
        queries = max(a["queries"], 1)
        k = a["candidates"] / queries
        sops = a["sops"] / queries
        macs = k * self.num_classes + (k * k if self.recurrent_rule is not None else 0)
        ids = torch.from_numpy(self.store.ids)
        out = {**super().stats(),
               "memory_bytes": self.store.nbytes + self.synapses.nbytes,
               "concept_neurons": len(ids), "label_neurons": self.num_classes,
               "label_synapses": int((self.synapses.label[ids] != 0).sum()),
               "recurrent_synapses": self.synapses.recurrent_synapses(ids) if self.recurrent_rule else 0,
               "queries": a["queries"],
               "spikes_per_query": (a["concept_spikes"] + a["label_spikes"]) / queries,
               "spike_rate_hz": (a["concept_spikes"] + a["label_spikes"])
               / (queries * (k + self.num_classes) * self.num_timesteps * self.dt),
               "sops_per_query": sops,
               "energy": {"convention": "45 nm: 0.9 pJ per synaptic operation (SOP) for the spiking network, "
                                        "4.6 pJ per multiply-accumulate (MAC) for the equivalent dense network "
                                        "(one pass over the same candidate neurons and weights); "
                                        "the prototype search is the same for both and not counted",
                          "pJ_per_sop": PJ_PER_SOP, "pJ_per_mac": PJ_PER_MAC,
                          "snn_pJ_per_query": PJ_PER_SOP * sops, "dense_macs_per_query": macs,
                          "dense_pJ_per_query": PJ_PER_MAC * macs},
               "plasticity": self.plasticity_summary()}
        if self.plif and len(ids):
            tau_ms = 1e3 / self.synapses.tau_mem_inv[ids]
            out["tau_mem_ms"] = {"mean": float(tau_ms.mean()), "std": float(tau_ms.std()),
                                 "min": float(tau_ms.min()), "max": float(tau_ms.max())}
        return out

    def _stats_end_to_end(self) -> dict:
        """Spikes, operations and energy per query, everything counted, beside the store's dense search and vote."""
        a = self.activity
        layers = self.network_layers()
        p = layers.parameters
        queries = max(a["queries"], 1)
        (N, d), C = layers.search.shape, self.num_classes
        steps = a["steps"] / queries
        label_synapses = int((layers.label != 0).sum())
        kernel = layers.family == "kernel_ridge"
        # search (+ clock), labels, self-inhibition; the vote's count line, k-gate and start gate besides
        synapses = N * (d + 1) + label_synapses + (N if kernel else 3 * N + 2)
        d_in = self.dim
        # the host's input transform: the vote's conditioning serves the dense store's search as well (not counted
        # for either); the class layers' unit norm (d_in MACs) is the spiking network's alone
        host_macs = 0 if layers.family == "vote" else d_in
        ops = {"host_macs": host_macs,
               "search_macs": N * d,                 # the query's d values onto N x d synapses, held for the run
               "clock_adds": N * steps,              # the clock line onto every search neuron, each step
               "neuron_updates": ((N + C) if kernel else (N + 3 + p.label_stages * C)) * steps,
               "readout_sops": a["label_synapses_used"] / queries,
               "spike_sops": a["sops"] / queries}    # every synaptic event a spike causes, the readout's included
        weight_reads = N * (d + 1) + ops["readout_sops"]
        pj = PJ[self.weights]
        snn_pj = (host_macs + ops["search_macs"]) * pj["mac"] + (ops["clock_adds"] + ops["spike_sops"]) * pj["add"] \
            + ops["neuron_updates"] * PJ["float32"]["add"]  # membranes stay float32, as the runtimes keep them
        # the store's own readout, dense: its search and top-k vote, or the class discriminants folded as the network
        # holds them (d_in x classes: the argmax a dense accelerator would compute)
        # (kernel ridge: its N x d similarities and N x C coefficients; the N exponentials left out)
        dense_macs = {"vote": N * d + self.top_k * C, "kernel_ridge": N * d + N * C}.get(layers.family, d_in * N)
        return {**PrototypeMemory.stats(self),
                "memory_bytes": self.store.nbytes, "network": "end_to_end", "weights": self.weights,
                "network_readout": layers.family, "concept_neurons": N, "label_neurons": C, "label_synapses": label_synapses,
                "queries": a["queries"], "silent": a["silent"],
                "spikes_per_query": (a["concept_spikes"] + a["label_spikes"]) / queries,
                "search_spikes_per_query": a["concept_spikes"] / queries,
                "steps_to_answer": steps, "sops_per_query": ops["spike_sops"],
                "spikes_per_synapse": ops["spike_sops"] / synapses,
                "energy": {"convention": "45 nm, Horowitz (ISSCC 2014): fp32 MAC 4.6 pJ, add 0.9 pJ; int8 MAC 0.23 pJ, "
                                         "add 0.03 pJ. Spiking network: the search layer's MACs (the graded query "
                                         "held on N x d synapses) at the weights' precision, the clock and every "
                                         "spike's synaptic event as adds at that precision, every neuron-state update "
                                         "per step as an fp32 add, and host_macs (the class layers' input norm). "
                                         "Dense: the store's search (N x d MACs) and top-k vote (k x C MACs), or "
                                         "its class discriminants folded (d_in x classes), or kernel ridge's "
                                         "similarities and coefficients (N x d + N x C), at the same precision",
                           "operations_per_query": ops, "weight_reads_per_query": weight_reads,
                           "synapses": synapses, "snn_pJ_per_query": snn_pj,
                           "dense_macs_per_query": dense_macs, "dense_pJ_per_query": dense_macs * pj["mac"],
                           "snn_over_dense": snn_pj / (dense_macs * pj["mac"]) if dense_macs else None,
                           "spikes_per_synapse_range_where_snn_wins": [0.15, 1.38]}}

    exports_nir = True

    def readouts(self) -> dict:
        """Both answers from the same memory: the spiking network and the store's own readout (the one it chose)."""
        return {"snn": self.predict, "store": super().predict}

    def write_artifacts(self, output_dir, queries, labels, class_names, observed_samples) -> dict:
        """The store's artifacts, and spike_raster.png of four queries spread over the experiences."""
        from neurocl import plots

        out = super().write_artifacts(output_dir, queries, labels, class_names, observed_samples)
        few = torch.arange(0, len(labels), max(1, len(labels) // 4))[:4]
        if self.network == "end_to_end" and self.network_layers().family == "kernel_ridge":
            layers = self.network_layers()
            record = self.run_kernel(queries[few], layers)
            answers = record.label_potential.argmax(dim=1)
            similarity = self.network_input(queries[few], layers) @ -layers.search.T
            kernel = torch.exp(2 * (similarity - 1) / layers.kernel_scale)  # what a spike leaves, up to a shared factor
            plots.kernel_raster(record.fire_step, similarity, layers.label[:, answers].T * kernel, labels[few], answers,
                                output_dir / "spike_raster.png", class_names, dt_ms=1e3 * self.dt)
            return out
        if self.network == "end_to_end":
            record, columns, layers = self.run_network(queries[few])
            held = columns.clamp(min=0)
            similarity = torch.einsum("bmd,bd->bm", layers.search[held], self.network_input(queries[few], layers))
            slots = torch.where(columns >= 0, layers.slots[held], -1)
            majority = layers.label[held].argmax(dim=2)
            plots.search_raster(record, slots, similarity, majority, labels[few], output_dir / "spike_raster.png",
                                class_names, dt_ms=1e3 * self.dt)
            return out
        plots.spike_raster(*self.spike_record(queries[few]), labels[few], output_dir / "spike_raster.png",
                           class_names, dt_ms=1e3 * self.dt)
        return out

    def spike_record(self, features: torch.Tensor):
        """The spikes of a few queries, for the raster plot: (record, candidate slots, their majority labels)."""
        slots, currents = self._candidates(features)
        with torch.no_grad():
            record = self._simulate(slots, currents)
        return record, slots, torch.from_numpy(self.store.majority(slots.numpy()))

    def to_nir(self):
        """The trained network as a NIR graph (neurocl/snn/nir_graph.py reads and runs it)."""
        return self._end_to_end_graph() if self.network == "end_to_end" else self._topk_currents_graph()

    def _end_to_end_graph(self):
        """The whole memory: input [z, clock] -> search (Linear, N x (d+1)) -> search CubaLIF (self-inhibition by
        Scale, k-WTA inhibition from the k-gate) -> label CubaLI (Linear, C x N) and the gates (count, start, end)."""
        import nir

        layers = self.network_layers()
        if layers.family == "kernel_ridge":
            return self._kernel_graph(layers)
        if layers.family != "vote":
            return self._class_layer_graph(layers)
        p, search, label = layers.parameters, layers.search, layers.label
        N, d = search.shape
        C, dt = self.num_classes, self.dt
        integrating = 1.0 / e2e.INTEGRATING_TAU  # tau_syn_inv of an integrating synapse
        gate = lambda threshold: cuba_lif(1, integrating, 1.0 / dt, threshold, dt=dt)
        nodes = {
            "input": nir.Input(input_type={"input": np.array([d + 1])}),
            "search": nir.Linear(weight=self._search_weight(layers)),
            "search_neurons": cuba_lif(N, integrating, 1.0 / dt, 1.0, dt=dt),
            "self_inhibition": nir.Scale(scale=np.full(N, -e2e.INHIBITION)),
            "count": nir.Linear(weight=np.ones((1, N))),
            "k_gate": gate(p.top_k - 0.5),
            "k_gate_reset": nir.Scale(scale=np.full(1, -e2e.INHIBITION)),
            "k_inhibition": nir.Linear(weight=np.full((N, 1), -e2e.INHIBITION)),
            "start_gate": gate(0.5),
            "start_to_end": nir.Linear(weight=np.ones((1, 1))),
            "end_gate": gate(p.window_steps - 0.5),
            "readout": nir.Linear(weight=label.numpy().T.astype(np.float64)),
            "label": cuba_li(C, integrating, 1.0, dt=dt),
            **{node: value for stage in range(2, p.label_stages + 1) for node, value in (
                (f"label_to_{stage}", nir.Linear(weight=np.eye(C))), (f"label_{stage}", cuba_li(C, 1.0 / dt, 1.0, dt=dt)))},
            "output": nir.Output(output_type={"output": np.array([C])}),
            "answer": nir.Output(output_type={"output": np.array([1])}),
        }
        edges = [("input", "search"), ("search", "search_neurons"),
                 ("search_neurons", "self_inhibition"), ("self_inhibition", "search_neurons"),
                 ("search_neurons", "count"), ("count", "k_gate"), ("count", "start_gate"),
                 ("k_gate", "k_gate_reset"), ("k_gate_reset", "k_gate"), ("k_gate", "k_inhibition"), ("k_inhibition", "search_neurons"),
                 ("start_gate", "start_to_end"), ("start_to_end", "end_gate"), ("end_gate", "answer"),
                 ("search_neurons", "readout"), ("readout", "label")]
        last = "label"
        for stage in range(2, p.label_stages + 1):
            edges += [(last, f"label_to_{stage}"), (f"label_to_{stage}", f"label_{stage}")]
            last = f"label_{stage}"
        edges.append((last, "output"))
        metadata = {"format": FORMAT, "neurocl": "prototypes_snn", "network": "end_to_end", "dt": dt,
                    "num_timesteps": p.num_timesteps, "top_k": p.top_k, "weights": self.weights,
                    "readout": layers.family,
                    "input": f"x(t) = [z, u(t)]: {layers.input}, computed on the host; "
                             "u(t) = 1 - (t + clock_skip) / ramp_steps, t = 0, 1, ...",
                    "ramp_steps": p.ramp_steps, "clock_skip": p.clock_skip, "window_steps": p.window_steps,
                    "label_stages": p.label_stages,
                    "answer_rule": ANSWER_AT_END_GATE,
                    "answer": "argmax of output (label membranes) at the first step 'answer' (the end gate) spikes; "
                              "at the last step if it never does; silent when no search neuron fired",
                    "search_neurons": "prototype slots", "prototype_slots": layers.slots.numpy()}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

    def _search_weight(self, layers: Layers) -> np.ndarray:
        """The search Linear: gain * the search synapses, and -gain on the clock line (the input's last value)."""
        gain, N = layers.parameters.search_gain, len(layers.search)
        return np.concatenate([gain * layers.search.numpy(), np.full((N, 1), -gain, np.float32)], axis=1).astype(np.float64)

    def _class_layer_graph(self, layers: Layers):
        """The class layers, feed-forward: input [z, clock] -> search (Linear, C x (d+1)) -> class CubaLIF -> output.
        The first class neuron to spike is the answer (top_k 1): the gates and inhibition of the vote's network
        only stop the run after it, so the graph leaves them out and a feed-forward runtime (snnTorch) reads it."""
        import nir

        p, dt = layers.parameters, self.dt
        N, d = layers.search.shape
        nodes = {"input": nir.Input(input_type={"input": np.array([d + 1])}),
                 "search": nir.Linear(weight=self._search_weight(layers)),
                 "search_neurons": cuba_lif(N, 1.0 / e2e.INTEGRATING_TAU, 1.0 / dt, 1.0, dt=dt),
                 "output": nir.Output(output_type={"output": np.array([N])})}
        edges = [("input", "search"), ("search", "search_neurons"), ("search_neurons", "output")]
        metadata = {"format": FORMAT, "neurocl": "prototypes_snn", "network": "end_to_end", "dt": dt,
                    "num_timesteps": p.num_timesteps, "top_k": 1, "weights": self.weights, "readout": layers.family,
                    "input": f"x(t) = [z, u(t)]: {layers.input}, computed on the host; "
                             "u(t) = 1 - (t + clock_skip) / ramp_steps, t = 0, 1, ...",
                    "ramp_steps": p.ramp_steps, "clock_skip": p.clock_skip, "answer_rule": ANSWER_AT_FIRST_SPIKE,
                    "answer": "the class (prototype_slots) of the first output neuron to spike, the lowest index among "
                              "those of its step; silent when none spikes in num_timesteps",
                    "search_neurons": "classes", "prototype_slots": layers.slots.numpy()}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

    def _kernel_graph(self, layers: Layers):
        """Kernel ridge: input [z, clock] -> search (Linear, N x (d+1)) -> search CubaLIF (self-inhibition by Scale:
        each fires once) -> readout (Linear, C x N: the ridge coefficients) -> label CubaLI (instant synapse, leak
        exp(-1 / (ramp_steps * scale)) per step) -> output, read at the last step."""
        import nir

        p, dt = layers.parameters, self.dt
        N, d = layers.search.shape
        C, leak = self.num_classes, 1.0 - e2e.kernel_decay(p, layers.kernel_scale)
        nodes = {"input": nir.Input(input_type={"input": np.array([d + 1])}),
                 "search": nir.Linear(weight=self._search_weight(layers)),
                 "search_neurons": cuba_lif(N, 1.0 / e2e.INTEGRATING_TAU, 1.0 / dt, 1.0, dt=dt),
                 "self_inhibition": nir.Scale(scale=np.full(N, -e2e.INHIBITION)),
                 "readout": nir.Linear(weight=layers.label.numpy().T.astype(np.float64)),
                 "label": cuba_li(C, 1.0 / dt, leak / dt, dt=dt),
                 "output": nir.Output(output_type={"output": np.array([C])})}
        edges = [("input", "search"), ("search", "search_neurons"), ("search_neurons", "self_inhibition"),
                 ("self_inhibition", "search_neurons"), ("search_neurons", "readout"), ("readout", "label"),
                 ("label", "output")]
        metadata = {"format": FORMAT, "neurocl": "prototypes_snn", "network": "end_to_end", "dt": dt,
                    "num_timesteps": p.num_timesteps, "top_k": p.top_k, "weights": self.weights,
                    "readout": layers.family, "kernel_scale": layers.kernel_scale,
                    "input": f"x(t) = [z, u(t)]: {layers.input}, computed on the host; "
                             "u(t) = 1 - (t + clock_skip) / ramp_steps, t = 0, 1, ...",
                    "ramp_steps": p.ramp_steps, "clock_skip": p.clock_skip, "answer_rule": ANSWER_AT_LAST_STEP,
                    "answer": "argmax of output (label membranes) at the last step; silent when no search neuron "
                              "fired",
                    "search_neurons": "prototype slots", "prototype_slots": layers.slots.numpy()}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

    def _topk_currents_graph(self):
        """The top-k-currents network: input currents -> concept CubaLIF (+ recurrent) -> label CubaLIF."""
        import nir

        if isinstance(self.label_neuron, LSNNParameters):
            raise ConfigError("neuron", "alif", "NIR 1.0 has no adaptive-threshold neuron",
                              "export a network trained with neuron=lif or neuron=plif")
        slots = torch.from_numpy(self.store.ids)
        N, C, q = len(slots), self.num_classes, self.label_neuron
        population = lambda n, tau_mem_inv: cuba_lif(n, float(q.tau_syn_inv), tau_mem_inv, float(q.v_th),
                                                      float(q.v_leak), float(q.v_reset), self.dt)
        concept_tau = (self.synapses.tau_mem_inv[slots].numpy() if self.plif else float(q.tau_mem_inv))
        nodes = {"input": nir.Input(input_type={"input": np.array([N])}),
                 "concept": population(N, concept_tau),
                 "readout": nir.Linear(weight=self.synapses.label[slots].T.numpy().astype(np.float64)),
                 "label": population(C, float(q.tau_mem_inv)),
                 "output": nir.Output(output_type={"output": np.array([C])})}
        edges = [("input", "concept"), ("concept", "readout"), ("readout", "label"), ("label", "output")]
        if self.recurrent_rule is not None:
            nodes["recurrent"] = nir.Linear(weight=self.synapses.dense_recurrent(slots).numpy().astype(np.float64))
            edges += [("concept", "recurrent"), ("recurrent", "concept")]
        metadata = {"format": FORMAT, "neurocl": "prototypes_snn", "network": "topk_currents", "dt": self.dt,
                    "num_timesteps": self.num_timesteps,
                    "input": "gain * exp((s_k - s_1) / temperature) on the query's top-k concept neurons (host search)",
                    "input_gain": self.input_gain, "temperature": self.temperature, "top_k": self.top_k,
                    "prototype_slots": slots.numpy()}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "synapses": self.synapses.state_dict()}

    def load_state_dict(self, state: dict):
        super().load_state_dict(state)
        self.synapses.load_state_dict(state["synapses"])


def quantize_int8(weights: torch.Tensor) -> torch.Tensor:
    """Symmetric per-layer int8: scale * round(w / scale), scale = max|w| / 127 (the values a chip holds, dequantised)."""
    scale = weights.abs().max().clamp(min=1e-12) / 127
    return torch.round(weights / scale).clamp(-127, 127) * scale


def kernel_int8(fitted, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel ridge's 8-bit (prototypes, coefficients), each layer rounded with error compensation
    (quantize_int8_compensated) under the store's own statistics, `counts` per prototype: the count-weighted second
    moment of the prototypes (the queries the store has seen) for the search layer, and of their kernel rows through
    the rounded search layer for the label layer. Plain rounding keeps 78-95% of Fashion-MNIST answers
    (experiments/spiking_end_to_end/kernel_ridge_spiking.md): the ridge coefficients cancel each other."""
    root = counts.float().sqrt()[:, None]
    prototypes = fitted.prototypes
    weighted = prototypes * root
    search = quantize_int8_compensated(prototypes.T, weighted.T @ weighted).T.contiguous()
    rows = store_readouts.kernel(prototypes, search, fitted.scale) * root
    return search, quantize_int8_compensated(fitted.coefficients, rows.T @ rows)


def int8_clipped_scale(weights: torch.Tensor, clips: int = 41) -> torch.Tensor:
    """The per-layer int8 step that rounds `weights` with the least squared error: max|w| / 127 times a clip in
    [0.2, 1] (1 is quantize_int8's step). A few large weights then saturate at +-127 steps while the many small ones
    get a finer grid; on kernel ridge's layers the clip is 0.4-0.9."""
    top = weights.abs().max().clamp(min=1e-12) / 127
    best_error, best_scale = math.inf, top
    for clip in torch.linspace(0.2, 1.0, clips, dtype=weights.dtype):
        scale = top * clip
        error = float(((torch.round(weights / scale).clamp(-127, 127) * scale - weights) ** 2).sum())
        if error < best_error:
            best_error, best_scale = error, scale
    return best_scale


def quantize_int8_compensated(weights: torch.Tensor, second_moment: torch.Tensor, damp: float = INT8_DAMP,
                              block: int = 128) -> torch.Tensor:
    """Per-layer int8 on int8_clipped_scale's grid, rounded with error compensation (GPTQ: Frantar et al., ICLR
    2023): weights (n_in, n_out) are rounded a row (an input) at a time, largest second moment first, and each row's
    rounding error moves the rows not yet rounded so that E|x^T (W - Q)|^2 stays least for inputs x of
    `second_moment` (n_in, n_in), its diagonal damped by `damp` of its mean. Rows are rounded in blocks whose
    error reaches the later rows in one product."""
    W = weights.double().clone()
    scale = int8_clipped_scale(W)
    H = second_moment.double().clone()
    H.diagonal().add_(damp * H.diagonal().mean() + 1e-12)
    order = torch.argsort(H.diagonal(), descending=True)
    W, H = W[order], H[order][:, order]
    # the upper Cholesky factor of H^-1: its row i says how row i's error is spread over the rows after it
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.empty_like(W)
    for start in range(0, len(W), block):
        end = min(start + block, len(W))
        errors = torch.empty(end - start, W.shape[1], dtype=W.dtype)
        for i in range(start, end):
            Q[i] = torch.round(W[i] / scale).clamp(-127, 127) * scale
            errors[i - start] = (W[i] - Q[i]) / U[i, i]
            W[i + 1:end] -= U[i, i + 1:end, None] * errors[i - start]
        W[end:] -= U[start:end, end:].T @ errors
    out = torch.empty_like(Q)
    out[order] = Q
    return out.to(weights.dtype)
