"""`memory=prototypes_snn`: an attractor memory of spiking neurons over the prototype store.

One concept neuron per prototype (the population follows the store's slots
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

import numpy as np
import torch
import torch.nn.functional as F
from norse.torch.functional.lsnn import LSNNParameters

from neurocl.errors import ConfigError
from neurocl.memory.base import Prediction, check_batch, prediction_from_scores
from neurocl.memory.prototypes import PrototypeMemory
from neurocl.snn.plasticity import (RewardSTDPParameters, check_parameters, reward_stdp_change,
                                    reward_stdp_initial_state, reward_stdp_step)
from neurocl.snn.neurons import (ParametricLIFParameters, base_parameters, check_timesteps, initial_state,
                                 simulate)
from neurocl.snn.synapses import ConceptSynapses

# Energy conventions (45 nm): a synaptic operation 0.9 pJ (an accumulate), a multiply-accumulate 4.6 pJ
# (Horowitz, ISSCC 2014), as used across the SNN literature to compare with the equivalent dense network.
PJ_PER_SOP, PJ_PER_MAC = 0.9, 4.6
REWARD_PER = ("query", "neuron")  # one reward per query (its winner right or wrong), or one per postsynaptic neuron


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
                 num_timesteps: int = 20, input_gain: float = 2.0, recurrent: bool = True,
                 recurrent_fan_in: int = 32, stdp_lr: float = 0.001, reward_modulation: bool = True,
                 reward_correct: float = 1.0, reward_wrong: float = -1.0, reward_per: str = "query",
                 teacher_current: float = 1.0,
                 initial_label_weight: float = 0.5, label_plasticity: dict | None = None,
                 recurrent_plasticity: dict | None = None, plastic_neurons: str = "new", dt: float = 1e-3,
                 learn_batch_size: int | None = None, readout: str = "vote", **store_options):
        if readout != "vote":  # the network is this memory's readout; the store's vote is its comparison
            raise ConfigError("memory.readout", readout, "the spiking memory reads out through its network",
                              "leave memory.readout=vote with memory=prototypes_snn")
        super().__init__(dim, num_classes, top_k, temperature, readout=readout, **store_options)
        check_timesteps(num_timesteps)
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
        self.activity = {"queries": 0, "candidates": 0, "concept_spikes": 0.0, "label_spikes": 0.0, "sops": 0.0}
        self.plasticity = []  # one entry per experience: which label synapses learning touched
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

    def predict(self, features) -> Prediction:
        check_batch(features, self.dim)
        if len(self.store) == 0:
            return prediction_from_scores(torch.full((len(features), self.num_classes), float("-inf")))
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
        ids = torch.arange(len(labels)) if ids is None else torch.as_tensor(ids)
        size = self.learn_batch_size or len(labels)  # test-then-train in chunks: later chunks learn from earlier ones
        for start in range(0, len(labels), size):
            chunk = slice(start, start + size)
            if len(self.store) > 0:
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

    exports_nir = True

    def readouts(self) -> dict:
        """Both answers on the same prototypes: the spiking network and the store's own vote."""
        return {"snn": self.predict, "store_vote": super().predict}

    def write_artifacts(self, output_dir, queries, labels, class_names, observed_samples) -> dict:
        """The store's artifacts, and spike_raster.png of four queries spread over the experiences."""
        from neurocl import plots

        out = super().write_artifacts(output_dir, queries, labels, class_names, observed_samples)
        few = torch.arange(0, len(labels), max(1, len(labels) // 4))[:4]
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
        """The trained network as a NIR graph: input currents -> concept CubaLIF (+ recurrent) -> label CubaLIF."""
        import nir
        from norse.torch.module.lif import LIFCell
        from norse.torch.utils.export_nir import _extract_norse_module  # Norse's own LIF -> NIR conversion

        if isinstance(self.label_neuron, LSNNParameters):
            raise ConfigError("neuron", "alif", "NIR 1.0 has no adaptive-threshold neuron",
                              "export a network trained with neuron=lif or neuron=plif")
        slots = torch.from_numpy(self.store.ids)
        N, C = len(slots), self.num_classes

        def population(n, tau_mem_inv):
            p = self.label_neuron
            full = lambda value: torch.full((n,), float(value))
            params = p._replace(tau_syn_inv=full(p.tau_syn_inv), tau_mem_inv=tau_mem_inv,
                                v_leak=full(p.v_leak), v_th=full(p.v_th), v_reset=full(p.v_reset))
            return _extract_norse_module(LIFCell(p=params), dt=self.dt)

        concept_tau = (self.synapses.tau_mem_inv[slots] if self.plif
                       else torch.full((N,), float(self.label_neuron.tau_mem_inv)))
        nodes = {"input": nir.Input(input_type={"input": np.array([N])}),
                 "concept": population(N, concept_tau),
                 "readout": nir.Linear(weight=self.synapses.label[slots].T.numpy().copy()),
                 "label": population(C, torch.full((C,), float(self.label_neuron.tau_mem_inv))),
                 "output": nir.Output(output_type={"output": np.array([C])})}
        edges = [("input", "concept"), ("concept", "readout"), ("readout", "label"), ("label", "output")]
        if self.recurrent_rule is not None:
            nodes["recurrent"] = nir.Linear(weight=self.synapses.dense_recurrent(slots).numpy())
            edges += [("concept", "recurrent"), ("recurrent", "concept")]
        metadata = {"neurocl": "prototypes_snn", "dt": self.dt, "num_timesteps": self.num_timesteps,
                    "input": "gain * exp((s_k - s_1) / temperature) on the query's top-k concept neurons",
                    "input_gain": self.input_gain, "temperature": self.temperature, "top_k": self.top_k,
                    "prototype_slots": slots.numpy()}
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "synapses": self.synapses.state_dict()}

    def load_state_dict(self, state: dict):
        super().load_state_dict(state)
        self.synapses.load_state_dict(state["synapses"])
