"""The prototype store: a self-organising concept memory over an approximate-NN index.

Each prototype has a mean (in feature space), a count, a label histogram
(labels are counted, not owned), a running spread (mean 1 - cosine of the
samples it absorbed, in the conditioned space), its founding step (age), its
last use, and a reservoir of exemplar ids, the evidence behind it.

observe, a batch at a time as array operations: a sample joins its nearest
indexed prototype when their conditioned cosine is >= similarity_threshold
(and, with purity_gate, the prototype's majority label is the sample's).
The samples that join nothing are leader-clustered in stream order: each
founds a prototype unless an earlier founder of the batch (of its label) is
within the threshold, which it then joins. A prototype that absorbs m samples
moves its mean towards theirs with rate max(1 - (1 - momentum)^m, m / count):
m EMA steps at once, an exact mean while the prototype is young. The
whitening is refreshed when a class appears or the sample count has grown
by refresh_growth since the last refresh.

maintain (every maintenance_interval observations): merge pairs whose cosine
is >= merge_threshold; split prototypes whose spread exceeds split_threshold
along their principal direction (tracked by Oja's rule); then, while over
max_prototypes, Ward-merge the cheapest pairs (cost n_i n_k / (n_i + n_k) *
|z_i - z_k|^2), many disjoint pairs per pass, or prune the least used, oldest
ones. Merge pairs are each prototype's exact nearest neighbours among the
prototypes of its label. With class_budget=balanced (the default) the budget is shared among
the classes seen: classes below a common level keep every prototype, the others are merged
(or pruned) down to that level (water-filling), so a class's share does not depend on when it
came or how tight its clusters were then (class-balanced memory, as GDumb's sampler keeps;
free: the cheapest merges anywhere, which on Split-FashionMNIST left sandals and sneakers
a third of the prototypes of other classes; kernel ridge over them scored 0.8749 against 0.8801
balanced on EfficientNet features, seed 0: experiments/all_streams).
Every merge, split and prune is counted.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from neurocl.errors import ConfigError, DataError
from neurocl.io import atomic_path, write_json
from neurocl.memory.backends import make_backend
from neurocl.memory.conditioning import Conditioner

OVER_BUDGET = ("merge", "prune")
CLASS_BUDGETS = ("balanced", "free")
CANDIDATES = 8  # nearest neighbours per prototype searched for merge pairs


class PrototypeStore:
    def __init__(self, dim: int, num_classes: int, similarity_threshold: float = 0.85, momentum: float = 0.1,
                 max_prototypes: int = 5000, maintenance_interval: int = 1000, merge_threshold: float | None = None,
                 split_threshold: float | None = None, over_budget: str = "merge", class_budget: str = "balanced",
                 purity_gate: bool = True,
                 conditioning: str = "whiten", shrinkage: float | str = "oas", projection_dim: int | None = 256,
                 refresh_growth: float = 2.0, exemplars: int = 8, precision: str = "float16",
                 backend: str = "exact", backend_options: dict | None = None, seed: int = 0):
        for key, value, low, high in (("similarity_threshold", similarity_threshold, -1, 1),
                                      ("merge_threshold", merge_threshold, -1, 1), ("momentum", momentum, 1e-9, 1),
                                      ("split_threshold", split_threshold, 1e-9, 2)):
            if value is not None and not low <= value <= high:
                raise ConfigError(f"memory.{key}", value, f"must lie in [{low:g}, {high:g}]",
                                  f"set memory.{key} inside that range")
        for key, value in (("max_prototypes", max_prototypes), ("maintenance_interval", maintenance_interval),
                           ("exemplars", exemplars)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"memory.{key}", value, "must be a positive integer", f"set memory.{key} to e.g. 1000")
        if max_prototypes < num_classes:  # else a full store merges classes away and cannot answer them all
            raise ConfigError("memory.max_prototypes", max_prototypes, f"is below the stream's {num_classes} classes, "
                              "and every class needs at least one prototype",
                              f"set memory.max_prototypes to at least {num_classes} (default 5000)")
        if not isinstance(refresh_growth, (int, float)) or refresh_growth <= 1:
            raise ConfigError("memory.refresh_growth", refresh_growth, "must be a number above 1",
                              "set memory.refresh_growth=2.0")
        if over_budget not in OVER_BUDGET:
            raise ConfigError("memory.over_budget", over_budget, f"one of {OVER_BUDGET}", "set memory.over_budget=merge")
        if class_budget not in CLASS_BUDGETS:
            raise ConfigError("memory.class_budget", class_budget, f"one of {CLASS_BUDGETS}",
                              "set memory.class_budget=balanced")
        if precision not in ("float32", "float16"):
            raise ConfigError("memory.precision", precision, "float32 or float16", "set memory.precision=float32")
        self.dim, self.num_classes, self.seed = dim, num_classes, seed
        self.threshold, self.momentum, self.max_prototypes = similarity_threshold, momentum, max_prototypes
        self.maintenance_interval, self.merge_threshold, self.split_threshold = (
            maintenance_interval, merge_threshold, split_threshold)
        self.over_budget, self.purity_gate, self.refresh_growth = over_budget, purity_gate, refresh_growth
        self.class_budget = class_budget
        self.num_exemplars, self.precision = exemplars, np.dtype(precision)
        self.conditioner = Conditioner(dim, num_classes, conditioning, shrinkage, projection_dim, seed)
        # backend_options holds one dict per backend; only the chosen backend's is used.
        self.backend_options = dict((backend_options or {}).get(backend) or {}, seed=seed)
        self.backend = make_backend(backend, self.conditioner.out_dim, **self.backend_options)
        self.rng = np.random.default_rng(seed)
        self.step = self.since_maintenance = 0
        self.counts_at_refresh = np.zeros(num_classes, np.int64)  # class counts behind the whitening
        self.events = {"merges": 0, "splits": 0, "prunes": 0, "refreshes": 0, "founded": 0, "updates": 0}
        # Objects that keep per-slot state in step with the store (the spiking memory's synapses):
        # each gets founded(j, label), merged(i, k, n_i, n_k) and copied(source, target).
        self.listeners = []
        self._allocate(0)

    # -- slots -------------------------------------------------------------------------------
    def _allocate(self, capacity: int):
        d, C, E = self.dim, self.num_classes, self.num_exemplars
        self.means = np.zeros((capacity, d), self.precision)
        self.counts = np.zeros(capacity, np.int64)
        self.label_counts = np.zeros((capacity, C), np.int32)
        self.spread = np.zeros(capacity, np.float32)
        self.age = np.zeros(capacity, np.int64)
        self.last_used = np.zeros(capacity, np.int64)
        self.uses = np.zeros(capacity, np.int64)
        self.exemplars = np.full((capacity, E), -1, np.int64)
        self.active = np.zeros(capacity, bool)
        self.directions = np.zeros((capacity, d), np.float16) if self.split_threshold else None
        self.direction_var = np.zeros(capacity, np.float32)

    # The conditioned means live in the search backend only (one copy): conditioned() reads them back.
    ARRAYS = ("means", "counts", "label_counts", "spread", "age", "last_used", "uses", "exemplars", "active",
              "directions", "direction_var")

    def _free_slots(self, count: int) -> np.ndarray:
        """`count` inactive slots, lowest first; the arrays grow (doubling) when there are too few."""
        free = np.flatnonzero(~self.active)
        if len(free) < count:
            old = len(self.active)
            size = max(64, 2 * old, old + count - len(free))
            for name in self.ARRAYS:
                a = getattr(self, name)
                if a is not None:
                    grown = np.full((size,) + a.shape[1:], -1 if name == "exemplars" else 0, a.dtype)
                    grown[:old] = a
                    setattr(self, name, grown)
            free = np.flatnonzero(~self.active)
        return free[:count]

    @property
    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.active)

    def __len__(self):
        return int(self.active.sum())

    def conditioned(self, ids: np.ndarray) -> np.ndarray:
        """The live prototypes' means in the conditioned space (unit norm), as indexed."""
        return self.backend.vectors(ids)

    def _condition(self, ids: np.ndarray):
        """(Re)index prototypes whose means changed."""
        self.backend.upsert(ids, self.conditioner.transform(self.means[ids]))

    def majority(self, ids) -> np.ndarray:
        return self.label_counts[ids].argmax(axis=-1)

    # -- observe -------------------------------------------------------------------------------
    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest prototypes of raw features x: (slot ids, conditioned cosines), -1 where fewer exist."""
        return self.backend.search(self.conditioner.transform(x), k)

    def _refresh_due(self) -> bool:
        """Whitening follows the data: on the first batch, when a class appears, when the count has grown."""
        c = self.conditioner
        if c.refreshes == 0:
            return True
        new_class = ((c.class_counts > 0) & (self.counts_at_refresh == 0)).any()
        return bool(new_class or c.class_counts.sum() >= self.refresh_growth * self.counts_at_refresh.sum())

    def observe(self, x: np.ndarray, y: np.ndarray, sample_ids: np.ndarray | None = None):
        """Absorb a batch: joins, foundings and the budget, each as array operations over the batch."""
        if sample_ids is None:
            sample_ids = np.arange(self.step, self.step + len(x))
        y, sample_ids = np.asarray(y, np.int64), np.asarray(sample_ids, np.int64)
        self.conditioner.update(x, y)
        if self._refresh_due():
            self.refresh()
        z = self.conditioner.transform(x)
        steps = self.step + 1 + np.arange(len(x))  # each sample's own step, as if observed one at a time
        target, sims = self._nearest_own_label(z, y)
        used = target >= 0
        self.last_used[target[used]] = steps[used]
        self.uses += np.bincount(target[used], minlength=len(self.uses))
        join = used & (sims >= self.threshold)
        leaders, members = self._leaders(z[~join], y[~join])
        fresh = self._found_batch(x[~join][leaders], y[~join][leaders], sample_ids[~join][leaders], steps[~join][leaders])
        # samples that would have joined a prototype founded earlier in the same batch join it now
        target[np.flatnonzero(~join)] = fresh[members]
        absorbed = join.copy()
        absorbed[np.flatnonzero(~join)[~np.isin(np.arange(members.size), leaders)]] = True
        z_fresh = self.conditioned(fresh)
        sims[~join] = np.einsum("nd,nd->n", z[~join], z_fresh[members])
        self._absorb_batch(target[absorbed], x[absorbed], z[absorbed], sims[absorbed], y[absorbed],
                           sample_ids[absorbed])
        self.step += len(x)
        self.enforce_budget()  # the budget holds after every batch, not only after maintenance
        self.since_maintenance += len(x)
        if self.since_maintenance >= self.maintenance_interval:
            self.maintain()

    def _nearest_own_label(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per sample, the nearest indexed prototype it may join (of its own majority label with the
        purity gate), and their cosine; -1 and -inf where there is none among the candidates."""
        near, sims = self.backend.search(z, CANDIDATES if self.purity_gate else 1)
        if near.shape[1] == 0:  # an empty store
            return np.full(len(z), -1, np.int64), np.full(len(z), -np.inf, np.float32)
        ok = near >= 0
        if self.purity_gate:
            ok &= self.majority(np.maximum(near, 0)) == y[:, None]
        first = ok.argmax(axis=1)
        rows = np.arange(len(z))
        found = ok[rows, first]
        return np.where(found, near[rows, first], -1), np.where(found, sims[rows, first], -np.inf).astype(np.float32)

    def _leaders(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Leader clustering of the samples that joined nothing: in stream order, a sample founds a
        prototype unless it is within the threshold of an earlier founder of its label (of any label
        without the purity gate). Returns the founders' rows and each row's founder (an index into them)."""
        if not len(z):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        close = z @ z.T >= self.threshold
        if self.purity_gate:
            close &= y[:, None] == y[None, :]
        founder = np.full(len(z), -1, np.int64)
        leaders = []
        for i in range(len(z)):
            if founder[i] < 0:
                founder[close[i] & (founder < 0)] = len(leaders)
                founder[i] = len(leaders)
                leaders.append(i)
        return np.asarray(leaders, np.int64), founder

    def _found_batch(self, x, labels, sample_ids, steps) -> np.ndarray:
        slots = self._free_slots(len(x))
        self.means[slots], self.counts[slots], self.spread[slots] = _cast(x, self.precision), 1, 0.0
        self.label_counts[slots] = 0
        self.label_counts[slots, labels] = 1
        self.age[slots] = self.last_used[slots] = steps
        self.uses[slots] = 1
        self.exemplars[slots] = -1
        self.exemplars[slots, 0] = sample_ids
        self.active[slots] = True
        if self.directions is not None:
            self.directions[slots], self.direction_var[slots] = 0, 0
        self._condition(slots)
        self.events["founded"] += len(slots)
        for listener in self.listeners:
            for j, label in zip(slots.tolist(), labels.tolist()):
                listener.founded(j, label)
        return slots

    def _absorb_batch(self, targets, x, z, similarity, labels, sample_ids):
        """Each target's mean moves towards the mean of its new samples with rate
        max(1 - (1 - momentum)^m, m / n): m EMA steps at once, an exact mean while the prototype is young."""
        if not len(targets):
            return
        order = np.argsort(targets, kind="stable")  # stream order within each target
        targets, x, z, similarity = targets[order], x[order], z[order], similarity[order]
        labels, sample_ids = labels[order], sample_ids[order]
        slots, start, m = np.unique(targets, return_index=True, return_counts=True)
        if self.directions is not None:  # the principal direction needs each residual in turn
            for j, xi in zip(targets.tolist(), x):
                self._track_direction(j, xi)
        n_old = self.counts[slots]
        n = n_old + m
        sums = np.add.reduceat(x.astype(np.float64), start, axis=0)
        rate = np.maximum(1.0 - (1.0 - self.momentum) ** m, m / n)
        old = _cast(self.means[slots], np.float64)
        self.means[slots] = old + rate[:, None] * (sums / m[:, None] - old)  # numpy: one rounding from float64
        self.spread[slots] = (n_old * self.spread[slots] + np.add.reduceat(1.0 - similarity, start)) / n
        self.counts[slots] = n
        self._condition(slots)
        C = self.num_classes
        self.label_counts[slots] += np.bincount(np.repeat(np.arange(len(slots)), m) * C + labels,
                                                minlength=len(slots) * C).reshape(len(slots), C).astype(np.int32)
        # reservoir sampling of exemplars, in stream order: the i-th sample of a prototype takes a slot
        # with probability E / i
        rank = n_old[np.repeat(np.arange(len(slots)), m)] + np.arange(len(targets)) - np.repeat(start, m) + 1
        slot = np.where(rank <= self.num_exemplars, rank - 1, (self.rng.random(len(rank)) * rank).astype(np.int64))
        keep = slot < self.num_exemplars
        self.exemplars[targets[keep], slot[keep]] = sample_ids[keep]
        self.events["updates"] += len(targets)

    def _track_direction(self, j: int, x):
        """Oja's rule: principal direction of a prototype's residuals (only when splits are on)."""
        residual = x - self.means[j].astype(np.float32)
        n = self.counts[j] + 1
        u = self.directions[j].astype(np.float32)
        u = residual if not u.any() else u + 0.05 * float(residual @ u) * residual
        self.directions[j] = u / max(np.linalg.norm(u), 1e-12)
        proj = float(residual @ self.directions[j].astype(np.float32))
        self.direction_var[j] += (proj * proj - self.direction_var[j]) / n

    # -- maintenance ---------------------------------------------------------------------------
    def refresh(self):
        """New conditioning statistics; the index is rebuilt in the new space."""
        self.conditioner.refresh()
        ids = self.ids
        self.backend.rebuild(ids, self.conditioner.transform(self.means[ids]))
        self.counts_at_refresh = self.conditioner.class_counts.copy()
        self.events["refreshes"] += 1

    def maintain(self):
        self.since_maintenance = 0
        if self.merge_threshold is not None:
            self._merge_pairs(lambda cost, sim: sim >= self.merge_threshold, limit=None)
        if self.split_threshold is not None:
            self._split()
            self.enforce_budget()

    def enforce_budget(self):
        while len(self) > self.max_prototypes:
            if self.over_budget == "prune" or not self._merge_pairs(lambda cost, sim: True, limit=self._excess()):
                self._prune(self._excess())

    def _excess(self) -> int | np.ndarray:
        """Prototypes over the budget: in all (class_budget=free), or per class (num_classes,) above its share."""
        if self.class_budget == "free":
            return len(self) - self.max_prototypes
        sizes = np.bincount(self.majority(self.ids), minlength=self.num_classes)
        return sizes - class_shares(sizes, self.max_prototypes)

    def _candidate_pairs(self):
        """(cost, similarity, i, k) for each prototype's CANDIDATES nearest prototypes of its own majority
        label (of any label without the purity gate), exactly, cheapest Ward cost first."""
        ids = self.ids
        groups = self.majority(ids) if self.purity_gate else np.zeros(len(ids), np.int64)
        parts = []
        for g in np.unique(groups):
            members = ids[groups == g]
            k = min(CANDIDATES, len(members) - 1)
            if k < 1:
                continue
            z = torch.from_numpy(self.conditioned(members))
            sims = z @ z.T
            sims.fill_diagonal_(-np.inf)
            values, near = sims.topk(k, dim=1)
            i, j = np.repeat(members, k), members[near.numpy().ravel()]
            parts.append((np.minimum(i, j), np.maximum(i, j), values.numpy().ravel()))
        if not parts:
            return (np.zeros(0),) * 2 + (np.zeros(0, np.int64),) * 2
        i, k, s = (np.concatenate(a) for a in zip(*parts))
        _, unique = np.unique(i * len(self.active) + k, return_index=True)
        i, k, s = i[unique], k[unique], s[unique]
        ni, nk = self.counts[i], self.counts[k]
        cost = ni * nk / (ni + nk) * (2.0 - 2.0 * s)  # |z_i - z_k|^2 for unit vectors
        order = np.argsort(cost, kind="stable")
        return cost[order], s[order], i[order], k[order]

    def _merge_pairs(self, accept, limit: int | np.ndarray | None) -> int:
        """Merge disjoint accepted pairs, cheapest first, many in one pass; returns how many. limit: at most this
        many pairs, or per class (an array by label, the label of a pair's first prototype)."""
        cost, similarity, first, second = self._candidate_pairs()
        per_class = isinstance(limit, np.ndarray)
        left = limit.copy() if per_class else limit
        labels = self.majority(first).tolist() if per_class else [0] * len(first)
        used, keep_i, keep_k, keep_s = set(), [], [], []
        for cost, sim, i, k, label in zip(cost.tolist(), similarity.tolist(), first.tolist(), second.tolist(), labels):
            if not per_class and left is not None and len(keep_i) >= left:
                break
            if (per_class and left[label] <= 0) or i in used or k in used or not accept(cost, sim):
                continue
            used.update((i, k))
            keep_i.append(i), keep_k.append(k), keep_s.append(sim)
            if per_class:
                left[label] -= 1
        if keep_i:
            I, K = np.array(keep_i, np.int64), np.array(keep_k, np.int64)
            self._merge_into(I, K, np.array(keep_s))  # re-indexes I
            self.backend.remove(K)
        self.events["merges"] += len(keep_i)
        return len(keep_i)

    def _merge_into(self, i: np.ndarray, k: np.ndarray, similarity: np.ndarray):
        """Merge each k into its i (disjoint pairs), all at once."""
        ni, nk = self.counts[i], self.counts[k]
        for listener in self.listeners:
            for a, b, na, nb in zip(i.tolist(), k.tolist(), ni.tolist(), nk.tolist()):
                listener.merged(a, b, na, nb)
        n = ni + nk
        self.means[i] = _cast((ni[:, None] * _cast(self.means[i]) + nk[:, None] * _cast(self.means[k])) / n[:, None],
                              self.precision)
        # pooled spread plus the Ward term: members now also sit n_k/n (n_i/n) of the gap from the mean
        self.spread[i] = (ni * self.spread[i] + nk * self.spread[k]) / n + ni * nk / n**2 * (1.0 - similarity)
        self.label_counts[i] += self.label_counts[k]
        pool = np.concatenate([self.exemplars[i], self.exemplars[k]], axis=1)  # a random E of both, -1 last
        keys = np.where(pool >= 0, self.rng.random(pool.shape), np.inf)
        self.exemplars[i] = np.take_along_axis(pool, np.argsort(keys, axis=1)[:, : self.num_exemplars], axis=1)
        self.counts[i], self.uses[i] = n, self.uses[i] + self.uses[k]
        self.age[i], self.last_used[i] = np.minimum(self.age[i], self.age[k]), np.maximum(self.last_used[i], self.last_used[k])
        self.active[k] = False
        self._condition(i)

    def _split(self):
        ids = self.ids
        split = ids[(self.spread[ids] > self.split_threshold) & (self.counts[ids] >= 4) & (self.direction_var[ids] > 0)]
        new = []
        for j in split:
            offset = np.sqrt(self.direction_var[j]) * self.directions[j].astype(np.float32)
            centre = self.means[j].astype(np.float32)
            k = int(self._free_slots(1)[0])
            for name in self.ARRAYS:
                a = getattr(self, name)
                if a is not None:
                    a[k] = a[j]
            for listener in self.listeners:
                listener.copied(int(j), k)
            half = self.counts[j] // 2
            self.counts[k], self.counts[j] = self.counts[j] - half, half
            self.label_counts[k] = self.label_counts[j] // 2
            self.label_counts[j] -= self.label_counts[k]
            self.means[j], self.means[k] = centre + offset, centre - offset
            self.spread[j] = self.spread[k] = self.spread[j] / 2
            self.direction_var[j] = self.direction_var[k] = 0
            self.directions[j] = self.directions[k] = 0
            new += [int(j), int(k)]
        self._condition(np.array(new, np.int64))
        self.events["splits"] += len(split)

    def _prune(self, count: int | np.ndarray):
        """Deactivate the `count` least used prototypes (count per class: an array by label)."""
        ids = self.ids
        ids = ids[np.lexsort((self.age[ids], self.last_used[ids], self.uses[ids]))]  # least used, stalest, oldest
        if isinstance(count, np.ndarray):
            labels = self.majority(ids)
            rank = np.zeros(len(ids), np.int64)  # each prototype's place in its own class's order
            for c in np.unique(labels):
                rank[labels == c] = np.arange(int((labels == c).sum()))
            gone = ids[rank < count[labels]]
        else:
            gone = ids[:count]
        self.active[gone] = False
        self.backend.remove(gone)
        self.events["prunes"] += len(gone)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self, with_index: bool = False) -> dict:
        """Arrays and metadata; `with_index` adds the search index itself (a checkpoint must not rebuild an
        approximate graph, which would answer differently)."""
        arrays = {name: getattr(self, name).copy() for name in self.ARRAYS if getattr(self, name) is not None}
        # the conditioned means, slot-indexed as before: a rebuilt index gets exactly the vectors it had
        arrays["z"] = np.zeros((len(self.active), self.conditioner.out_dim), np.float32)
        arrays["z"][self.ids] = self.conditioned(self.ids)
        arrays.update({f"conditioner.{k}": v.copy() for k, v in self.conditioner.state_dict().items()
                       if isinstance(v, np.ndarray)})
        meta = {"step": self.step, "since_maintenance": self.since_maintenance,
                "counts_at_refresh": self.counts_at_refresh.tolist(),
                "events": dict(self.events), "conditioner_refreshes": self.conditioner.refreshes,
                "conditioner_rho": self.conditioner.rho,
                "rng": self.rng.bit_generator.state}
        return {"arrays": arrays, "meta": meta, **({"index": self.backend.index_state()} if with_index else {})}

    def load_state_dict(self, state: dict, rebuild_index: bool = True):
        arrays, meta = state["arrays"], state["meta"]
        for name in self.ARRAYS:
            if name in arrays:
                setattr(self, name, arrays[name].copy())
        self.conditioner.load_state_dict({k.split(".", 1)[1]: v for k, v in arrays.items()
                                          if k.startswith("conditioner.")})
        self.conditioner.refreshes = meta["conditioner_refreshes"]
        self.conditioner.rho = meta.get("conditioner_rho")  # a float: not among the arrays
        self.step, self.events = meta["step"], dict(meta["events"])
        self.since_maintenance = meta["since_maintenance"]
        self.counts_at_refresh = np.asarray(meta["counts_at_refresh"], np.int64)
        if "rng" in meta:
            self.rng.bit_generator.state = meta["rng"]
        if state.get("index"):
            self.backend.load_index_state(state["index"])
        elif rebuild_index:
            ids = self.ids
            self.backend.rebuild(ids, self._saved_vectors(arrays, ids))

    def save(self, directory):
        """Prototypes, conditioning statistics and the index itself into `directory`, each file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        with atomic_path(directory / "store.npz") as tmp:
            with tmp.open("wb") as f:
                np.savez(f, **state["arrays"])
        index_files, state["meta"]["backend"] = self.backend.save(directory)
        files = [directory / "store.npz", *index_files]
        state["meta"]["checksums"] = {p.name: _digest(p) for p in files}
        write_json(directory / "store.json", state["meta"])

    def load(self, directory):
        """Load what save() wrote; a missing or corrupt file raises before anything changes."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / "store.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read {directory / 'store.json'} ({e}). Fix: point to a directory written "
                            "by PrototypeStore.save; the files there were left as they are.") from e
        for name, digest in meta["checksums"].items():
            if not (directory / name).is_file() or _digest(directory / name) != digest:
                raise DataError(f"saved store file {directory / name} is missing or corrupt (checksum mismatch). "
                                "Fix: restore it from a backup or save the store again; nothing was loaded.")
        with np.load(directory / "store.npz") as data:
            arrays = {k: data[k] for k in data.files}
        if arrays["means"].shape[1:] != (self.dim,):
            raise DataError(f"saved store holds {arrays['means'].shape[1]}-d prototypes, this store is {self.dim}-d. "
                            "Fix: load it with the encoder it was built with.")
        self.load_state_dict({"arrays": arrays, "meta": meta}, rebuild_index=False)
        ids = self.ids
        self.backend.load(directory, meta.get("backend", {}), ids, self._saved_vectors(arrays, ids))

    def _saved_vectors(self, arrays: dict, ids: np.ndarray) -> np.ndarray:
        return arrays["z"][ids] if "z" in arrays else self.conditioner.transform(self.means[ids])

    # -- statistics ---------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of what the store keeps: its live prototypes, conditioning statistics and index."""
        arrays = [getattr(self, name) for name in self.ARRAYS if getattr(self, name) is not None]
        per_prototype = sum(a[:1].nbytes for a in arrays)
        return per_prototype * len(self) + self.conditioner.nbytes + self.backend.nbytes


TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                np.dtype(np.float64): torch.float64}


def class_shares(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Each class's share of a budget of prototypes (water-filling): the classes below a common level keep all
    they hold, the others get the level; integers summing to min(budget, sizes.sum()), a remainder going one each
    to the first classes above the level."""
    sizes = np.asarray(sizes, np.int64)
    if sizes.sum() <= budget:
        return sizes.copy()
    low, high = 0, int(sizes.max())  # the highest level whose shares fit the budget
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if np.minimum(sizes, middle).sum() <= budget else (low, middle - 1)
    shares = np.minimum(sizes, low)
    above = np.flatnonzero(sizes > low)
    shares[above[: budget - shares.sum()]] += 1
    return shares


def _cast(a: np.ndarray, dtype=np.float32) -> np.ndarray:
    """To and from float16 prototype means by torch: 6x faster than numpy's astype."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(TORCH_DTYPES[np.dtype(dtype)]).numpy()


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()
