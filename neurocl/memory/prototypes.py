"""`memory=prototypes`: the prototype store and a readout chosen from the data as it streams.

The store keeps prototypes (means, counts, label histograms) and, in its
conditioner, the class means and the pooled within-class covariance. Three
readouts use them (neurocl/memory/readouts.py): the top-k similarity vote
(prototype evidence), a shared-covariance discriminant and the whitened
nearest class mean (class statistics), the vote blended with the
discriminant, and Gaussian kernel ridge over the count-weighted prototypes.

With `readout: auto` (the default) no setting is taken from a benchmark: a
`holdout_fraction` of each experience's training samples is held out, every
candidate (readout x shrinkage x bandwidth x ridge x blend weight) is fitted
on everything else seen so far and scored on the held-out samples, the
scores accumulate over the stream, and the best so far answers (by its mean
held-out score over experiences, as A_last averages over experiences: on
imbalanced streams a big experience does not outvote the others; the score is
`holdout_metric`, accuracy by default; balanced_accuracy weighs a class the
stream has shown only a few times like the others, and on the blurry online
streams trades A_last for A_auc: experiments/online); then the held-out
samples join the store. `readout: vote | lda | whitened_ncm |
vote+lda | kernel_ridge` restricts the choice to one family (`vote` holds nothing out).

The scoring, the choice and the joining happen in end_experience, which the
driver calls after each experience's last batch: predict and state_dict only
read (state_dict keeps the samples still held out, so a checkpoint taken
mid-experience continues exactly).
"""

import numpy as np
import torch

from neurocl.errors import ConfigError
from neurocl.memory import readouts
from neurocl.memory.base import MemoryBase, Prediction, check_batch, prediction_from_scores, warn_held_back
from neurocl.memory.store import PrototypeStore
from neurocl.memory.unknown import fit_unknown

READOUTS = ("auto", "vote", "lda", "whitened_ncm", "vote+lda", "kernel_ridge")
CLASS_STATISTICS = ("lda", "whitened_ncm", "vote+lda")  # need the conditioner's within-class covariance
# kernel ridge's space: the raw features centred on the running mean (centred), or the store's conditioned space,
# the vote's (conditioned: whitened and projected when conditioning=whiten); unit norm either way
KERNEL_SPACES = ("centred", "conditioned")
# how a readout's held-out answers are scored, per experience: accuracy over the samples, or balanced_accuracy,
# the mean over the classes held out of each one's accuracy (the stream's class frequencies left out)
HOLDOUT_METRICS = ("accuracy", "balanced_accuracy")


class PrototypeMemory(MemoryBase):
    def __init__(self, dim: int, num_classes: int, top_k: int = 10, temperature: float = 0.1,
                 readout: str = "auto", holdout_fraction: float = 0.2,
                 lda_shrinkage: list[float] = (1e-3, 1e-2, 0.1, 0.3), blend_weights: list[float] = (0.25, 0.5, 0.75),
                 kernel_bandwidths: list[float] = (0.25, 0.5, 1.0), ridge: list[float] = (0.1,),
                 kernel_space: str = "centred", holdout_metric: str = "accuracy", **store_options):
        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError("memory.top_k", top_k, "must be a positive integer", "set memory.top_k=10")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError("memory.temperature", temperature, "must be a positive number", "set memory.temperature=0.1")
        if readout not in READOUTS:
            raise ConfigError("memory.readout", readout, f"one of {READOUTS}", "set memory.readout=auto")
        if holdout_metric not in HOLDOUT_METRICS:
            raise ConfigError("memory.holdout_metric", holdout_metric, f"one of {HOLDOUT_METRICS}",
                              "set memory.holdout_metric=accuracy")
        if kernel_space not in KERNEL_SPACES:
            raise ConfigError("memory.kernel_space", kernel_space, f"one of {KERNEL_SPACES}",
                              "set memory.kernel_space=centred")
        if not 0 < holdout_fraction < 1:
            raise ConfigError("memory.holdout_fraction", holdout_fraction, "must be in (0, 1)",
                              "set memory.holdout_fraction=0.2")
        for key, values, low, high in (("lda_shrinkage", lda_shrinkage, 0, 1), ("blend_weights", blend_weights, 0, 1),
                                       ("kernel_bandwidths", kernel_bandwidths, 0, float("inf")),
                                       ("ridge", ridge, 0, float("inf"))):
            if not len(values) or not all(isinstance(v, (int, float)) and low < v <= high for v in values):
                raise ConfigError(f"memory.{key}", list(values), f"must list numbers in ({low:g}, {high:g}]",
                                  f"leave memory.{key} at its default")
        self.dim, self.num_classes, self.top_k, self.temperature = dim, num_classes, top_k, temperature
        self.readout, self.holdout_fraction, self.kernel_space = readout, holdout_fraction, kernel_space
        self.holdout_metric = holdout_metric
        self.grid = {"lda": [float(v) for v in lda_shrinkage], "blend": [float(v) for v in blend_weights],
                     "bandwidth": [float(v) for v in kernel_bandwidths], "ridge": [float(v) for v in ridge]}
        self.store = PrototypeStore(dim, num_classes, **store_options)
        self.seed = self.store.seed
        self.generator = torch.Generator().manual_seed(self.seed)
        self.unknown_scale = None  # the open-set score's standardisation, from the latest held-out samples
        self.held_out = []  # (features, labels, ids, experience) not yet in the store
        self.held_out_seen = {}  # experience -> {class: held-out samples scored}
        self.tallies = {}   # candidate -> {experience: {class: held-out samples it answered right}}
        self.chosen = "vote"
        self._fitted = None  # (the chosen readout's parameters, the open-set statistics); None: stale

    # -- learning ----------------------------------------------------------------------------
    def observe(self, features, labels, experience: int = 0, ids=None):
        check_batch(features, self.dim, labels, self.num_classes)
        ids = torch.arange(len(labels)) if ids is None else torch.as_tensor(ids)
        if self.readout != "vote":
            hold = torch.rand(len(labels), generator=self.generator) < self.holdout_fraction
            self.held_out.append((features[hold], labels[hold], ids[hold], experience))
            features, labels, ids = features[~hold], labels[~hold], ids[~hold]
        if len(labels):
            self.store.observe(features.float().numpy(), labels.numpy(), ids.numpy())
        self._fitted = None

    def end_experience(self):
        """Settle the experience: score every candidate readout on its held-out samples, absorb them into the
        store, choose the best readout so far and fit it (and the open-set score, standardised on them)."""
        if self.held_out:
            x = torch.cat([h[0] for h in self.held_out]).float()
            y = torch.cat([h[1] for h in self.held_out])
            ids = torch.cat([h[2] for h in self.held_out])
            experience = torch.cat([torch.full((len(h[1]),), h[3]) for h in self.held_out])
            self.held_out = []
            if len(self.store) and len(y):
                cells = [(e, c, (experience == e) & (y == c)) for e in experience.unique().tolist()
                         for c in y[experience == e].unique().tolist()]
                for e, c, rows in cells:
                    seen = self.held_out_seen.setdefault(e, {})
                    seen[c] = seen.get(c, 0) + int(rows.sum())
                for name, scores in self._candidate_scores(x).items():
                    right = scores.argmax(dim=1) == y
                    tally = self.tallies.setdefault(name, {})
                    for e, c, rows in cells:
                        tally.setdefault(e, {})[c] = tally.get(e, {}).get(c, 0) + int(right[rows].sum())
            if len(y):
                self.store.observe(x.numpy(), y.numpy(), ids.numpy())
        else:
            x = None
        if self.tallies:
            self.chosen = max(self.tallies, key=self.holdout_accuracy)  # the first listed wins a tie
        score = self._fit_unknown(x)
        self.unknown_scale = score.scale if score is not None else None
        self._fitted = (self._fit(self.chosen), score)

    def _current_fit(self):
        """(the chosen readout's parameters, the open-set score): computed from the state when first asked after
        a change, and kept until the next one. A cache, not state: predict and state_dict stay reads."""
        if self._fitted is None:
            self._fitted = (self._fit(self.chosen), self._fit_unknown())
        return self._fitted

    # -- readouts ----------------------------------------------------------------------------
    def _families(self) -> list[str]:
        families = list(READOUTS[1:]) if self.readout == "auto" else [self.readout]
        if self.store.conditioner.within is None:  # class statistics need conditioning=whiten
            families = [f for f in families if f not in CLASS_STATISTICS] or ["vote"]
        return families

    def _vote(self, x: torch.Tensor):
        ids, sims = self.store.search(x.float().numpy(), self.top_k)
        counts = torch.from_numpy(self.store.label_counts[ids].astype(np.float32))
        return readouts.vote_scores(torch.from_numpy(sims).float(), counts, self.temperature), ids, sims

    def _eigen(self):
        return readouts.within_eigen(self.store.conditioner.within_covariance())

    def _lda(self, rho: float, eigen=None) -> readouts.LDAReadout:
        eigen = eigen if eigen is not None else self._eigen()
        return readouts.fit_lda(torch.from_numpy(self.store.conditioner.class_means), eigen, rho)

    def _whitened_ncm(self, rho: float, eigen=None) -> readouts.WhitenedNCMReadout:
        c = self.store.conditioner
        return readouts.fit_whitened_ncm(torch.from_numpy(c.class_means), torch.from_numpy(c.mean),
                                         eigen if eigen is not None else self._eigen(), rho)

    def _posterior(self, scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return torch.softmax(scores.masked_fill(~self.known_classes(), float("-inf")) / temperature, dim=1)

    def kernel_input(self, x: np.ndarray) -> torch.Tensor:
        """Kernel ridge's space (memory.kernel_space), unit norm: centred, the raw features centred on the running
        mean; conditioned, the store's conditioned vectors (those its search reads)."""
        if self.kernel_space == "conditioned":
            return torch.from_numpy(self.store.conditioner.transform(x))
        x = torch.from_numpy(np.ascontiguousarray(x)).float()  # float16 means: torch widens 6x faster than numpy
        return torch.nn.functional.normalize(x - torch.from_numpy(self.store.conditioner.mean), dim=1)

    def _kernel_grams(self, bandwidths=None):
        """(bandwidth, scale, prototypes, Gram matrix, counts, label shares) per bandwidth (of the grid by
        default); the prototypes' inner products are computed once for all bandwidths."""
        ids = self.store.ids
        prototypes = self.kernel_input(self.store.means[ids])
        counts = torch.from_numpy(self.store.counts[ids]).float()
        labels = torch.from_numpy(self.store.label_counts[ids]).float()
        shares = labels / labels.sum(dim=1, keepdim=True)
        inner = prototypes @ prototypes.T
        median = readouts.median_squared_distance(inner)
        for bandwidth in bandwidths or self.grid["bandwidth"]:
            scale = bandwidth * median
            yield bandwidth, scale, prototypes, readouts.gaussian(inner, scale), counts, shares

    def _candidate_scores(self, x: torch.Tensor) -> dict:
        families, out = self._families(), {}
        vote = self._vote(x)[0]
        if "vote" in families:
            out["vote"] = vote
        eigen = self._eigen() if set(families) & set(CLASS_STATISTICS) else None  # one for every rho and readout
        if "lda" in families or "vote+lda" in families:
            for rho in self.grid["lda"]:
                posterior = self._posterior(readouts.lda_scores(x, self._lda(rho, eigen)))
                if "lda" in families:
                    out[f"lda:{rho:g}"] = posterior
                if "vote+lda" in families:
                    for w in self.grid["blend"]:
                        out[f"vote+lda:{rho:g}:{w:g}"] = (1 - w) * vote + w * posterior
        if "whitened_ncm" in families:
            rotated = (x.float() - torch.from_numpy(self.store.conditioner.mean)) @ eigen[1].float()
            for rho in self.grid["lda"]:
                cosines = readouts.whitened_ncm_scores(x, self._whitened_ncm(rho, eigen), rotated)
                out[f"whitened_ncm:{rho:g}"] = self._posterior(cosines, self.temperature)
        if "kernel_ridge" in families:
            z, inner = self.kernel_input(x.numpy()), None
            for bandwidth, scale, prototypes, gram, counts, shares in self._kernel_grams():
                inner = z @ prototypes.T if inner is None else inner  # one product serves every bandwidth
                query_kernel = readouts.gaussian(inner, scale)
                for lam in self.grid["ridge"]:
                    fitted = readouts.fit_kernel_ridge(prototypes, gram, counts, shares, scale, lam)
                    out[f"kernel_ridge:{bandwidth:g}:{lam:g}"] = query_kernel @ fitted.coefficients
        return out

    def _fit(self, name: str):
        family, *values = name.split(":")
        values = [float(v) for v in values]
        if family in ("lda", "vote+lda"):
            return self._lda(values[0])
        if family == "whitened_ncm":
            return self._whitened_ncm(values[0])
        if family == "kernel_ridge":
            _, scale, prototypes, gram, counts, shares = next(self._kernel_grams([values[0]]))
            return readouts.fit_kernel_ridge(prototypes, gram, counts, shares, scale, values[1])
        return None

    def _fit_unknown(self, held_out: torch.Tensor | None = None):
        """The open-set score (neurocl/memory/unknown.py), standardised on `held_out` when given, else as the
        latest experience's held-out samples standardised it."""
        n = int(self.store.conditioner.class_counts.sum())
        return fit_unknown(self.store, np.random.default_rng([self.seed, n]), held_out, self.unknown_scale)

    def predict(self, features) -> Prediction:
        """The chosen readout's answer from the store; samples held out since the last end_experience are not in
        it yet (end_experience settles them: the driver calls it before it evaluates)."""
        check_batch(features, self.dim)
        warn_held_back(self, sum(len(h[1]) for h in self.held_out))
        if len(self.store) == 0:
            return prediction_from_scores(torch.full((len(features), self.num_classes), float("-inf")))
        family, *values = self.chosen.split(":")
        fitted, unknown = self._current_fit()
        vote, ids, sims = self._vote(features)
        if family == "vote":
            scores = vote
        elif family == "lda":
            scores = self._posterior(readouts.lda_scores(features, fitted))
        elif family == "whitened_ncm":
            scores = self._posterior(readouts.whitened_ncm_scores(features, fitted), self.temperature)
        elif family == "vote+lda":
            w = float(values[1])
            scores = (1 - w) * vote + w * self._posterior(readouts.lda_scores(features, fitted))
        else:
            scores = readouts.kernel_ridge_scores(self.kernel_input(features.float().numpy()), fitted)
        known = self.known_classes()
        scores[:, ~known] = float("-inf")
        shares = scores[:, known].clamp(min=0)
        confidence = shares.max(dim=1).values / shares.sum(dim=1).clamp(min=1e-12)  # the winner's share
        evidence = {"prototype_ids": torch.from_numpy(ids), "confidence": confidence,
                    "prototype_similarities": torch.from_numpy(sims).float()}
        if unknown is not None:
            evidence["unknown"] = unknown(features)
        return prediction_from_scores(scores, evidence)

    def evidence_rows(self, prediction: Prediction, per_answer: int = 3, labels=None) -> list[list[int]]:
        """Exemplars of the nearest prototypes that hold the answered class (or `labels`), nearest first."""
        if "prototype_ids" not in prediction.evidence:  # an empty memory answered nothing
            return super().evidence_rows(prediction, per_answer)
        labels = prediction.labels if labels is None else labels
        rows = []
        for label, ids in zip(labels.tolist(), prediction.evidence["prototype_ids"].tolist()):
            held = [i for i in ids if i >= 0 and label >= 0 and self.store.label_counts[i, label] > 0]
            exemplars = [int(e) for i in held for e in self.store.exemplars[i] if e >= 0]
            rows.append(exemplars[:per_answer])
        return rows

    def holdout_accuracy(self, candidate: str) -> float:
        """Mean over experiences of the candidate's held-out score (memory.holdout_metric)."""
        tally = self.tallies[candidate]
        scores = []
        for e, seen in self.held_out_seen.items():
            right = tally.get(e, {})
            if self.holdout_metric == "balanced_accuracy":
                scores.append(np.mean([right.get(c, 0) / n for c, n in seen.items()]))
            else:
                scores.append(sum(right.values()) / sum(seen.values()))
        return float(np.mean(scores))

    def write_artifacts(self, output_dir, queries, labels, class_names, observed_samples) -> dict:
        """prototype_map.png, and the store's statistics for results.json."""
        from neurocl import plots
        from neurocl.memory.analyzer import PrototypeAnalyzer

        analyzer = PrototypeAnalyzer(self.store, observed_samples=observed_samples)
        plots.prototype_map(*analyzer.map_2d(), output_dir / "prototype_map.png", class_names)
        return {"prototype_stats": analyzer.stats()}

    def known_classes(self) -> torch.Tensor:
        """(C,) bool: classes that some prototype holds samples of."""
        return torch.from_numpy(self.store.label_counts[self.store.ids].sum(axis=0) > 0)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The store, the readout's tallies and choice, and the held-out samples not settled yet (none after
        end_experience, where the driver checkpoints)."""
        pending = [{"features": f.clone(), "labels": l.clone(), "ids": i.clone(), "experience": e}
                   for f, l, i, e in self.held_out]
        return {**self.store.state_dict(with_index=True),
                "readout": {"tallies": {k: {e: dict(c) for e, c in v.items()} for k, v in self.tallies.items()},
                            "chosen": self.chosen, "held_out_seen": {e: dict(c) for e, c in self.held_out_seen.items()},
                            "generator": self.generator.get_state(),
                            "unknown_scale": list(self.unknown_scale) if self.unknown_scale else None,
                            "held_out": pending}}

    def load_state_dict(self, state: dict):
        self.store.load_state_dict(state)
        # checkpoints before the per-class tallies hold one count per experience: kept as one class, -1
        by_class = lambda counts: {e: dict(c) if isinstance(c, dict) else {-1: c} for e, c in counts.items()}
        self.tallies = {k: by_class(v) for k, v in state["readout"]["tallies"].items()}
        self.chosen, self.held_out_seen = state["readout"]["chosen"], by_class(state["readout"]["held_out_seen"])
        self.generator.set_state(state["readout"]["generator"])
        scale = state["readout"].get("unknown_scale")
        self.unknown_scale = tuple(scale) if scale else None
        self.held_out = [(h["features"].clone(), h["labels"].clone(), h["ids"].clone(), h["experience"])
                         for h in state["readout"].get("held_out", [])]  # older checkpoints: none kept
        self._fitted = None

    def stats(self) -> dict:
        out = {"prototypes": len(self.store), **self.store.events, "memory_bytes": self.store.nbytes,
               "readout": self.chosen}
        if self.tallies:
            out["readout_holdout_accuracy"] = self.holdout_accuracy(self.chosen)
        return out
