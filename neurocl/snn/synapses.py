"""The spiking memory's synapses, indexed by the prototype store's slots and kept in step with its events.

- label[j, c]: concept neuron j -> label neuron c. A new concept neuron starts
  with `initial_weight` onto the label of the sample that founded it; merges
  average the two rows by sample count.
- recurrent: concept -> concept, sparse. Each concept neuron keeps at most
  `fan_in` incoming synapses (pre slot, pre generation, weight); a new
  co-activation replaces the weakest. A slot's generation changes when the
  store reuses it for a new prototype, which silently invalidates synapses
  from the prototype that lived there before.
- tau_mem_inv[j]: the learned membrane rate of each concept neuron (plif).
"""

import torch

from neurocl.snn.plasticity import RewardSTDPParameters, bound_weights


class ConceptSynapses:
    def __init__(self, num_classes: int, initial_weight: float = 0.5, fan_in: int = 32,
                 tau_mem_inv: float | None = None):
        self.num_classes, self.initial_weight, self.fan_in, self.initial_tau = (
            num_classes, initial_weight, fan_in, tau_mem_inv)
        self.label = torch.zeros(0, num_classes)
        self.generation = torch.zeros(0, dtype=torch.int64)
        self.pre = torch.full((0, fan_in), -1, dtype=torch.int64)
        self.pre_generation = torch.zeros(0, fan_in, dtype=torch.int64)
        self.weight = torch.zeros(0, fan_in)
        self.tau_mem_inv = None if tau_mem_inv is None else torch.zeros(0)

    TENSORS = ("label", "generation", "pre", "pre_generation", "weight", "tau_mem_inv")

    def ensure(self, capacity: int):
        """Grow every per-slot tensor to at least `capacity` rows (the store grows its slots the same way)."""
        old = len(self.label)
        if capacity <= old:
            return
        capacity = max(capacity, 2 * old, 64)  # grow geometrically: slots are founded one at a time
        for name in self.TENSORS:
            t = getattr(self, name)
            if t is not None:
                grown = torch.full((capacity,) + t.shape[1:], -1 if name == "pre" else 0, dtype=t.dtype)
                grown[:old] = t
                setattr(self, name, grown)

    # -- store events -------------------------------------------------------------------------
    def founded(self, j: int, label: int):
        self.ensure(j + 1)
        self.label[j] = 0
        self.label[j, int(label)] = self.initial_weight
        self.generation[j] += 1
        self.pre[j], self.weight[j] = -1, 0
        if self.tau_mem_inv is not None:
            self.tau_mem_inv[j] = self.initial_tau

    def merged(self, i: int, k: int, n_i: int, n_k: int):
        """k is merged into i: i's label synapses become the count-weighted mean; i keeps its recurrent inputs."""
        self.label[i] = (n_i * self.label[i] + n_k * self.label[k]) / (n_i + n_k)
        if self.tau_mem_inv is not None:
            self.tau_mem_inv[i] = (n_i * self.tau_mem_inv[i] + n_k * self.tau_mem_inv[k]) / (n_i + n_k)

    def copied(self, source: int, target: int):
        self.ensure(target + 1)
        for name in ("label", "pre", "pre_generation", "weight", "tau_mem_inv"):
            t = getattr(self, name)
            if t is not None:
                t[target] = t[source]
        self.generation[target] += 1

    # -- gather and learn ---------------------------------------------------------------------
    def gather_label(self, slots: torch.Tensor) -> torch.Tensor:
        return self.label[slots]  # (B, K, C)

    def gather_recurrent(self, slots: torch.Tensor) -> torch.Tensor:
        """(B, K_post, K_pre): the recurrent weights among each query's candidate neurons."""
        pre, valid = self._valid_inputs(slots)  # (B, K, fan_in)
        match = (pre.unsqueeze(-1) == slots[:, None, None, :]) & valid.unsqueeze(-1)  # (B, K, fan_in, K)
        return (self.weight[slots].unsqueeze(-1) * match).sum(dim=2)

    def _valid_inputs(self, posts: torch.Tensor):
        pre = self.pre[posts]
        valid = (pre >= 0) & (self.pre_generation[posts] == self.generation[pre.clamp(min=0)])
        return pre, valid

    def add_label(self, slots: torch.Tensor, change: torch.Tensor, p: RewardSTDPParameters) -> torch.Tensor:
        """Add per-query changes (B, K, C) to the label synapses of `slots` (B, K); returns the rows touched."""
        rows = slots.reshape(-1)
        self.label.index_add_(0, rows, change.reshape(len(rows), -1).to(self.label.dtype))
        touched = rows.unique()
        # normalisation acts on the incoming weights of each label neuron, i.e. on columns of `label`
        self.label[touched] = bound_weights(self.label[touched].T, p._replace(max_incoming=None)).T
        if p.max_incoming is not None:
            self.label[:] = bound_weights(self.label.T, p).T
        return touched

    def add_recurrent(self, slots: torch.Tensor, change: torch.Tensor, p: RewardSTDPParameters):
        """Add per-query changes (B, K_post, K_pre) to the recurrent synapses among `slots`."""
        B, K = slots.shape
        post = slots[:, :, None].expand(B, K, K).reshape(-1)
        pre = slots[:, None, :].expand(B, K, K).reshape(-1)
        change = change.reshape(-1)
        keep = (change != 0) & (post != pre)
        if not keep.any():
            return
        capacity = len(self.label)
        keys, inverse = torch.unique(post[keep] * capacity + pre[keep], return_inverse=True)
        delta = torch.zeros(len(keys), dtype=self.weight.dtype).index_add_(0, inverse, change[keep].to(self.weight.dtype))
        post, pre = keys // capacity, keys % capacity
        # synapses that exist: add, then bound
        existing, valid = self._valid_inputs(post)
        hit = (existing == pre[:, None]) & valid
        found = hit.any(dim=1)
        column = hit.int().argmax(dim=1)
        rows, cols = post[found], column[found]
        self.weight[rows, cols] = bound_weights(self.weight[rows, cols] + delta[found], p._replace(max_incoming=None))
        # new synapses from potentiation: compete with the existing ones for each neuron's fan_in places
        new = ~found & (delta > 0)
        if new.any():
            self._insert(post[new], pre[new], bound_weights(delta[new], p._replace(max_incoming=None)))
        if p.max_incoming is not None:
            touched = post.unique()
            self.weight[touched] = bound_weights(self.weight[touched], p)

    def _insert(self, post: torch.Tensor, pre: torch.Tensor, weight: torch.Tensor):
        rows = post.unique()
        old_pre, valid = self._valid_inputs(rows)
        old_weight = torch.where(valid, self.weight[rows], torch.full_like(self.weight[rows], -1.0))
        all_post = torch.cat([rows[:, None].expand_as(old_pre).reshape(-1), post])
        all_pre = torch.cat([old_pre.reshape(-1), pre])
        all_weight = torch.cat([old_weight.reshape(-1), weight])
        order = torch.argsort(all_weight, descending=True, stable=True)
        order = order[torch.argsort(all_post[order], stable=True)]  # by neuron, strongest first
        all_post, all_pre, all_weight = all_post[order], all_pre[order], all_weight[order]
        _, counts = torch.unique_consecutive(all_post, return_counts=True)
        starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rank = torch.arange(len(all_post)) - starts
        keep = (rank < self.fan_in) & (all_weight > 0)
        self.pre[rows], self.weight[rows] = -1, 0
        r, c = all_post[keep], rank[keep]
        self.pre[r, c], self.weight[r, c] = all_pre[keep], all_weight[keep]
        self.pre_generation[r, c] = self.generation[all_pre[keep]]

    # -- bookkeeping --------------------------------------------------------------------------
    def recurrent_synapses(self, slots: torch.Tensor) -> int:
        _, valid = self._valid_inputs(slots)
        return int((valid & (self.weight[slots] > 0)).sum())

    def dense_recurrent(self, slots: torch.Tensor) -> torch.Tensor:
        """(N, N) recurrent weights among `slots` (post rows, pre columns), for export."""
        position = torch.full((len(self.label),), -1, dtype=torch.int64)
        position[slots] = torch.arange(len(slots))
        pre, valid = self._valid_inputs(slots)
        column = position[pre.clamp(min=0)]
        ok = valid & (column >= 0)
        dense = torch.zeros(len(slots), len(slots))
        rows = torch.arange(len(slots))[:, None].expand_as(pre)
        dense[rows[ok], column[ok]] = self.weight[slots][ok]
        return dense

    def state_dict(self) -> dict:
        return {name: getattr(self, name).clone() for name in self.TENSORS if getattr(self, name) is not None}

    def load_state_dict(self, state: dict):
        for name, t in state.items():
            setattr(self, name, t.clone())

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, n).numel() * getattr(self, n).element_size() for n in self.TENSORS
                   if getattr(self, n) is not None)
