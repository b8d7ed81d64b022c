"""The prototype store: a self-organising concept memory over an approximate-NN index.

Each prototype has a mean (in feature space), a count, a label histogram
(labels are counted, not owned), a running spread (mean 1 - cosine of the
samples it absorbed, in the conditioned space), its founding step (age), its
last use, and a reservoir of exemplar ids, the evidence behind it.

observe: a sample goes to its nearest prototype when their conditioned
cosine is >= similarity_threshold (and, with purity_gate, the prototype's
majority label is the sample's); it moves the mean by EMA with rate
max(momentum, 1 / count), an exact mean while the prototype is young.
Otherwise it founds a new prototype.

maintain (every maintenance_interval observations): merge pairs whose cosine
is >= merge_threshold; split prototypes whose spread exceeds split_threshold
along their principal direction (tracked by Oja's rule); then, while over
max_prototypes, Ward-merge the cheapest pairs (cost n_i n_k / (n_i + n_k) *
|z_i - z_k|^2) or prune the least used, oldest ones. Every merge, split and
prune is counted.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from neurocl.errors import ConfigError, DataError
from neurocl.io import atomic_path, write_json
from neurocl.memory.backends import make_backend
from neurocl.memory.conditioning import Conditioner

OVER_BUDGET = ("merge", "prune")
CANDIDATES = 8  # nearest neighbours per prototype searched for merge pairs


class PrototypeStore:
    def __init__(self, dim: int, num_classes: int, similarity_threshold: float = 0.85, momentum: float = 0.1,
                 max_prototypes: int = 5000, maintenance_interval: int = 1000, merge_threshold: float | None = None,
                 split_threshold: float | None = None, over_budget: str = "merge", purity_gate: bool = True,
                 conditioning: str = "whiten", shrinkage: float = 1e-2, projection_dim: int | None = None,
                 refresh_interval: int = 5000, exemplars: int = 8, precision: str = "float32",
                 backend: str = "hnswlib", backend_options: dict | None = None, seed: int = 0):
        for key, value, low, high in (("similarity_threshold", similarity_threshold, -1, 1),
                                      ("merge_threshold", merge_threshold, -1, 1), ("momentum", momentum, 1e-9, 1),
                                      ("split_threshold", split_threshold, 1e-9, 2)):
            if value is not None and not low <= value <= high:
                raise ConfigError(f"memory.{key}", value, f"must lie in [{low:g}, {high:g}]",
                                  f"set memory.{key} inside that range")
        for key, value in (("max_prototypes", max_prototypes), ("maintenance_interval", maintenance_interval),
                           ("refresh_interval", refresh_interval), ("exemplars", exemplars)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"memory.{key}", value, "must be a positive integer", f"set memory.{key} to e.g. 1000")
        if over_budget not in OVER_BUDGET:
            raise ConfigError("memory.over_budget", over_budget, f"one of {OVER_BUDGET}", "set memory.over_budget=merge")
        if precision not in ("float32", "float16"):
            raise ConfigError("memory.precision", precision, "float32 or float16", "set memory.precision=float32")
        self.dim, self.num_classes = dim, num_classes
        self.threshold, self.momentum, self.max_prototypes = similarity_threshold, momentum, max_prototypes
        self.maintenance_interval, self.merge_threshold, self.split_threshold = (
            maintenance_interval, merge_threshold, split_threshold)
        self.over_budget, self.purity_gate, self.refresh_interval = over_budget, purity_gate, refresh_interval
        self.num_exemplars, self.precision = exemplars, np.dtype(precision)
        self.conditioner = Conditioner(dim, num_classes, conditioning, shrinkage, projection_dim)
        # backend_options holds one dict per backend; only the chosen backend's is used.
        self.backend_name = backend
        self.backend_options = dict((backend_options or {}).get(backend) or {}, seed=seed)
        self.backend = make_backend(backend, self.conditioner.out_dim, **self.backend_options)
        self.rng = np.random.default_rng(seed)
        self.step = self.since_maintenance = self.since_refresh = 0
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

    ARRAYS = ("means", "counts", "label_counts", "spread", "age", "last_used", "uses", "exemplars", "active",
              "directions", "direction_var")

    def _free_slot(self) -> int:
        free = np.flatnonzero(~self.active)
        if len(free):
            return int(free[0])
        old = len(self.active)
        for name in self.ARRAYS:
            a = getattr(self, name)
            if a is not None:
                grown = np.zeros((max(64, 2 * old),) + a.shape[1:], a.dtype)
                if name == "exemplars":
                    grown[:] = -1
                grown[:old] = a
                setattr(self, name, grown)
        return old

    @property
    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.active)

    def __len__(self):
        return int(self.active.sum())

    def conditioned(self, ids: np.ndarray) -> np.ndarray:
        return self.conditioner.transform(self.means[ids].astype(np.float32))

    def majority(self, ids) -> np.ndarray:
        return self.label_counts[ids].argmax(axis=-1)

    # -- observe -------------------------------------------------------------------------------
    def observe(self, x: np.ndarray, y: np.ndarray, sample_ids: np.ndarray | None = None):
        if sample_ids is None:
            sample_ids = np.arange(self.step, self.step + len(x))
        self.conditioner.update(x, y)
        if self.conditioner.refreshes == 0 or self.since_refresh >= self.refresh_interval:
            self.refresh()
        z = self.conditioner.transform(x)
        # With the purity gate a sample joins the nearest prototype of its own label among a few candidates.
        near, sims = self.backend.search(z, CANDIDATES if self.purity_gate else 1)
        fresh_ids, fresh_z, fresh_labels, touched = [], [], [], set()
        for i in range(len(x)):
            label, j, s = int(y[i]), -1, -np.inf
            for cand, sim in zip(near[i].tolist(), sims[i].tolist()):
                if cand >= 0 and (not self.purity_gate or self.majority(cand) == label):
                    j, s = cand, sim
                    break
            if fresh_ids:  # prototypes founded in this batch are not in the index yet
                fs = np.asarray(fresh_z) @ z[i]
                if self.purity_gate:
                    fs[np.asarray(fresh_labels) != label] = -np.inf
                best = int(fs.argmax())
                if fs[best] > s:
                    j, s = fresh_ids[best], float(fs[best])
            self.step += 1
            if j >= 0:
                self.last_used[j], self.uses[j] = self.step, self.uses[j] + 1
            if j >= 0 and s >= self.threshold:
                self._absorb(j, x[i], z[i], s, label, int(sample_ids[i]))
                touched.add(j)
                if j in fresh_ids:
                    fresh_z[fresh_ids.index(j)] = self.conditioned(np.array([j]))[0]
            else:
                j = self._found(x[i], label, int(sample_ids[i]))
                fresh_ids.append(j)
                fresh_z.append(z[i])
                fresh_labels.append(label)
        changed = np.array(sorted(touched | set(fresh_ids)), np.int64)
        self.backend.upsert(changed, self.conditioned(changed))
        self.since_maintenance += len(x)
        self.since_refresh += len(x)
        if self.since_maintenance >= self.maintenance_interval:
            self.maintain()
        self.enforce_budget()  # the budget holds after every batch, not only after maintenance

    def _found(self, x, label: int, sample_id: int) -> int:
        j = self._free_slot()
        self.means[j], self.counts[j], self.spread[j] = x, 1, 0.0
        self.label_counts[j] = 0
        self.label_counts[j, label] = 1
        self.age[j] = self.last_used[j] = self.step
        self.uses[j] = 1
        self.exemplars[j] = -1
        self.exemplars[j, 0] = sample_id
        self.active[j] = True
        if self.directions is not None:
            self.directions[j], self.direction_var[j] = 0, 0
        self.events["founded"] += 1
        for listener in self.listeners:
            listener.founded(j, label)
        return j

    def _absorb(self, j: int, x, z, similarity: float, label: int, sample_id: int):
        n = self.counts[j] + 1
        rate = max(self.momentum, 1.0 / n)
        residual = x - self.means[j].astype(np.float32)
        self.means[j] = self.means[j] + rate * residual
        self.counts[j], self.label_counts[j, label] = n, self.label_counts[j, label] + 1
        self.spread[j] += ((1.0 - similarity) - self.spread[j]) / n
        slot = n - 1 if n <= self.num_exemplars else self.rng.integers(n)  # reservoir sampling
        if slot < self.num_exemplars:
            self.exemplars[j, slot] = sample_id
        if self.directions is not None:  # Oja's rule: principal direction of the residuals
            u = self.directions[j].astype(np.float32)
            u = residual if not u.any() else u + 0.05 * float(residual @ u) * residual
            self.directions[j] = u / max(np.linalg.norm(u), 1e-12)
            proj = float(residual @ self.directions[j].astype(np.float32))
            self.direction_var[j] += (proj * proj - self.direction_var[j]) / n
        self.events["updates"] += 1

    # -- maintenance ---------------------------------------------------------------------------
    def refresh(self):
        """New conditioning statistics; the index is rebuilt in the new space."""
        self.conditioner.refresh()
        ids = self.ids
        self.backend.rebuild(ids, self.conditioned(ids))
        self.since_refresh = 0
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
            excess = len(self) - self.max_prototypes
            if self.over_budget == "prune" or not self._merge_pairs(lambda cost, sim: True, limit=excess):
                self._prune(len(self) - self.max_prototypes)

    def _candidate_pairs(self):
        """(cost, similarity, i, k) for each prototype's nearest neighbours, cheapest Ward cost first."""
        ids = self.ids
        z = self.conditioned(ids)
        near, sims = self.backend.search(z, CANDIDATES + 1)
        i = np.repeat(ids, near.shape[1])
        k, s = near.ravel(), sims.ravel()
        keep = (k >= 0) & (i < k)
        if self.purity_gate:
            keep &= self.majority(i) == self.majority(np.maximum(k, 0))
        i, k, s = i[keep], k[keep], s[keep]
        ni, nk = self.counts[i], self.counts[k]
        cost = ni * nk / (ni + nk) * (2.0 - 2.0 * s)  # |z_i - z_k|^2 for unit vectors
        order = np.argsort(cost, kind="stable")
        return cost[order], s[order], i[order], k[order]

    def _merge_pairs(self, accept, limit: int | None) -> int:
        """Merge disjoint accepted pairs, cheapest first; returns how many."""
        merged, used, changed, removed = 0, set(), [], []
        for cost, sim, i, k in zip(*self._candidate_pairs()):
            if limit is not None and merged >= limit:
                break
            i, k = int(i), int(k)
            if i in used or k in used or not accept(cost, sim):
                continue
            used.update((i, k))
            self._merge_into(i, k, float(sim))
            changed.append(i)
            removed.append(k)
            merged += 1
        self.backend.remove(np.array(removed, np.int64))
        self.backend.upsert(np.array(changed, np.int64), self.conditioned(np.array(changed, np.int64)))
        self.events["merges"] += merged
        return merged

    def _merge_into(self, i: int, k: int, similarity: float):
        ni, nk = self.counts[i], self.counts[k]
        for listener in self.listeners:
            listener.merged(i, k, int(ni), int(nk))
        n = ni + nk
        self.means[i] = (ni * self.means[i].astype(np.float32) + nk * self.means[k].astype(np.float32)) / n
        # pooled spread plus the Ward term: members now also sit n_k/n (n_i/n) of the gap from the mean
        self.spread[i] = (ni * self.spread[i] + nk * self.spread[k]) / n + ni * nk / n**2 * (1.0 - similarity)
        self.label_counts[i] += self.label_counts[k]
        pool = np.concatenate([self.exemplars[i][self.exemplars[i] >= 0], self.exemplars[k][self.exemplars[k] >= 0]])
        pick = self.rng.permutation(len(pool))[: self.num_exemplars]
        self.exemplars[i] = -1
        self.exemplars[i, : len(pick)] = pool[pick]
        self.counts[i], self.uses[i] = n, self.uses[i] + self.uses[k]
        self.age[i], self.last_used[i] = min(self.age[i], self.age[k]), max(self.last_used[i], self.last_used[k])
        self.active[k] = False

    def _split(self):
        ids = self.ids
        split = ids[(self.spread[ids] > self.split_threshold) & (self.counts[ids] >= 4) & (self.direction_var[ids] > 0)]
        new = []
        for j in split:
            offset = np.sqrt(self.direction_var[j]) * self.directions[j].astype(np.float32)
            centre = self.means[j].astype(np.float32)
            k = self._free_slot()
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
        self.backend.upsert(np.array(new, np.int64), self.conditioned(np.array(new, np.int64)))
        self.events["splits"] += len(split)

    def _prune(self, count: int):
        ids = self.ids
        order = np.lexsort((self.age[ids], self.last_used[ids], self.uses[ids]))  # least used, then stalest, then oldest
        gone = ids[order[:count]]
        self.active[gone] = False
        self.backend.remove(gone)
        self.events["prunes"] += len(gone)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        arrays = {name: getattr(self, name).copy() for name in self.ARRAYS if getattr(self, name) is not None}
        arrays.update({f"conditioner.{k}": v.copy() for k, v in self.conditioner.state_dict().items()
                       if isinstance(v, np.ndarray)})
        meta = {"step": self.step, "since_maintenance": self.since_maintenance, "since_refresh": self.since_refresh,
                "events": dict(self.events), "conditioner_refreshes": self.conditioner.refreshes}
        return {"arrays": arrays, "meta": meta}

    def load_state_dict(self, state: dict, rebuild_index: bool = True):
        arrays, meta = state["arrays"], state["meta"]
        for name in self.ARRAYS:
            if name in arrays:
                setattr(self, name, arrays[name].copy())
        self.conditioner.load_state_dict({k.split(".", 1)[1]: v for k, v in arrays.items()
                                          if k.startswith("conditioner.")})
        self.conditioner.refreshes = meta["conditioner_refreshes"]
        self.step, self.events = meta["step"], dict(meta["events"])
        self.since_maintenance, self.since_refresh = meta["since_maintenance"], meta["since_refresh"]
        if rebuild_index:
            ids = self.ids
            self.backend.rebuild(ids, self.conditioned(ids))

    def save(self, directory):
        """Prototypes, conditioning statistics and the index itself into `directory`, each file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        with atomic_path(directory / "store.npz") as tmp:
            with tmp.open("wb") as f:
                np.savez(f, **state["arrays"])
        files = [directory / "store.npz"]
        if self.backend_name == "hnswlib":
            with atomic_path(directory / "index.hnsw") as tmp:
                self.backend.index.save_index(str(tmp))
            files.append(directory / "index.hnsw")
            state["meta"]["removed"] = sorted(self.backend.removed)
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
        hnsw = self.backend_name == "hnswlib"
        self.load_state_dict({"arrays": arrays, "meta": meta}, rebuild_index=not hnsw)
        if hnsw:
            self.backend.index.load_index(str(directory / "index.hnsw"))
            self.backend.removed = set(meta["removed"])

    # -- statistics ---------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Bytes of what the store keeps: its live prototypes, conditioning statistics and index."""
        arrays = [getattr(self, name) for name in self.ARRAYS if getattr(self, name) is not None]
        per_prototype = sum(a[:1].nbytes for a in arrays)
        return per_prototype * len(self) + self.conditioner.nbytes + self.backend.nbytes


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()
