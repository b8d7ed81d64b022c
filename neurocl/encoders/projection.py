"""A CLIP-style contrastive projection head that aligns two modalities on paired data.

`ContrastiveProjection` maps features of modality a (e.g. page images) and of
modality b (e.g. report texts) through one linear head each into a shared,
unit-norm space, trained with the symmetric InfoNCE loss of CLIP (Radford et
al., 2021): row i of a and row i of b are a positive pair, every other row of
the batch a negative.

In a stream, `StreamProjection` decides when the head is fitted (FREEZE_POLICIES):

    frozen            never fitted in the stream: a head loaded from `checkpoint`, or without one the seeded
                      random init (a control: a random projection, no alignment)
    first_experience  fitted on the first experience's pairs, then frozen: the feature space stays fixed, so
                      statistics a memory keeps (class means, covariances, prototypes) stay valid
    stream            fitted further on each experience's pairs. The projection then changes after every
                      experience, so features projected earlier drift: a memory's stored statistics of earlier
                      experiences are in an older space than the features it is queried with

`retrieval_recall` scores cross-modal retrieval (recall@k) from any two paired feature sets.
"""

import logging
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurocl.errors import ConfigError, DataError, check_finite

log = logging.getLogger(__name__)

FREEZE_POLICIES = ("frozen", "first_experience", "stream")
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps its learned logit scale to at most 100


def retrieval_recall(queries: torch.Tensor, keys: torch.Tensor, ks=(1, 5)) -> dict:
    """Recall@k of cross-modal retrieval: query i's true match is key i; similarity is cosine.

    recall@k = share of queries whose match is among the k most similar keys. Ties are broken uniformly at
    random, in expectation: a query with g keys strictly more similar than its match and e other keys exactly
    as similar scores clip(k - g, 0, e + 1) / (e + 1). So features that carry nothing (all equal) score exactly
    chance, k / n, not 1 (ties in the match's favour) nor 0 (against it). Returns {"R@k": float}.
    """
    queries, keys = torch.as_tensor(queries).float(), torch.as_tensor(keys).float()
    if queries.ndim != 2 or queries.shape != keys.shape or not len(queries):
        raise DataError(f"retrieval needs paired (n, d) queries and keys, got {tuple(queries.shape)} and "
                        f"{tuple(keys.shape)}. Fix: pass row-aligned features of the same pairs.")
    if any(not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError("ks", ks, "must be positive integers", "use ks=(1, 5)")
    q, kk = F.normalize(queries, dim=1), F.normalize(keys, dim=1)
    n = len(q)
    hits = {k: 0.0 for k in ks}
    for start in range(0, n, 1024):  # (1024, n) similarities at a time
        sim = q[start:start + 1024] @ kk.T
        true = sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))][:, None]
        greater = (sim > true).sum(dim=1).double()
        tied = (sim == true).sum(dim=1).double()  # includes the match itself: e + 1
        for k in ks:
            hits[k] += ((k - greater).clamp(min=0, max=None).minimum(tied) / tied).sum().item()
    return {f"R@{k}": hits[k] / n for k in ks}


class ContrastiveProjection(nn.Module):
    """One linear head per modality into a shared unit-norm space, trained with symmetric InfoNCE."""

    def __init__(self, dim_a: int, dim_b: int, projection_dim: int = 256, temperature: float = 0.07, seed: int = 0,
                 learn_temperature: bool = False):
        super().__init__()
        for key, value in (("projection.dim_a", dim_a), ("projection.dim_b", dim_b),
                           ("projection.projection_dim", projection_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(key, value, "must be a positive integer", "set projection.projection_dim=256 "
                                  "(dim_a and dim_b are the encoders' feature sizes)")
        if not isinstance(temperature, (int, float)) or not 1 / 100 <= temperature <= 1:
            raise ConfigError("projection.temperature", temperature, "must be in [0.01, 1] (CLIP clamps the "
                              "logit scale 1/temperature to at most 100)", "set projection.temperature=0.07")
        if not isinstance(learn_temperature, bool):
            raise ConfigError("projection.learn_temperature", learn_temperature, "must be true or false",
                              "set projection.learn_temperature=false")
        self.dim_a, self.dim_b, self.projection_dim, self.seed = dim_a, dim_b, projection_dim, seed
        self.learn_temperature = learn_temperature
        generator = torch.Generator().manual_seed(seed)  # the init depends on the seed only, not on global state
        self.head_a, self.head_b = nn.Linear(dim_a, projection_dim), nn.Linear(dim_b, projection_dim)
        for head in (self.head_a, self.head_b):
            bound = 1 / math.sqrt(head.in_features)  # nn.Linear's own init range, drawn from our generator
            with torch.no_grad():
                head.weight.uniform_(-bound, bound, generator=generator)
                head.bias.uniform_(-bound, bound, generator=generator)
        # log(1 / temperature), as CLIP parameterises it; a buffer when fixed, so it is saved but never trained
        log_scale = torch.tensor(math.log(1 / temperature))
        if learn_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(0, MAX_LOGIT_SCALE).exp()

    def forward_a(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head_a(x.float()), dim=1)

    def forward_b(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head_b(x.float()), dim=1)

    @torch.no_grad()
    def project_a(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_a(torch.as_tensor(x))

    @torch.no_grad()
    def project_b(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_b(torch.as_tensor(x))

    def loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE of unit-norm projections: mean of the a->b and b->a cross-entropies over the batch."""
        logits = self.logit_scale * za @ zb.T
        target = torch.arange(len(za), device=za.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    @torch.no_grad()
    def evaluate_loss(self, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> float:
        """InfoNCE over fixed consecutive batches (it depends on the batch: fixed, so epochs compare)."""
        total = 0.0
        for start in range(0, len(a), batch_size):
            za, zb = self.forward_a(a[start:start + batch_size]), self.forward_b(b[start:start + batch_size])
            total += self.loss(za, zb).item() * len(za)
        return total / len(a)

    def _state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def fit(self, a: torch.Tensor, b: torch.Tensor, epochs: int = 200, batch_size: int = 256, lr: float = 1e-3,
            weight_decay: float = 1e-4, validation_fraction: float = 0.1, patience: int = 10,
            progress: bool = True) -> list[dict]:
        """Train on pairs (a[i], b[i]) with AdamW; early stopping on a held-out `validation_fraction` of the pairs.

        Up to `epochs` epochs of shuffled mini-batches (seeded); stops after `patience` epochs without a lower
        validation loss and keeps the state of the best epoch, so the number of epochs is chosen on held-out
        training pairs, never on test pairs. Returns one {"epoch", "train_loss", "val_loss"} per epoch run;
        `self.best_epoch` is the epoch whose state was kept (0: the state before fitting).
        """
        a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
        check_fit_options(epochs, batch_size, lr, weight_decay, validation_fraction, patience)
        if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
            raise DataError(f"fit needs row-paired (n, d) features, got {tuple(a.shape)} and {tuple(b.shape)}. "
                            "Fix: pass the two modalities' features of the same samples, in the same order.")
        if a.shape[1] != self.dim_a or b.shape[1] != self.dim_b:
            raise DataError(f"features of {a.shape[1]} and {b.shape[1]} dims for a head built for {self.dim_a} and "
                            f"{self.dim_b}. Fix: build the projection with the encoders' dims.")
        check_finite(a, "modality-a features")
        check_finite(b, "modality-b features")
        generator = torch.Generator().manual_seed(self.seed)
        # Inside a torch.distributed job (neurocl.distributed: submitit tasks, no torchrun) the batches are shared
        # out; every task draws the same batches from the same seed, so all hold the same head throughout.
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        order = torch.randperm(len(a), generator=generator)
        n_val = round(len(a) * validation_fraction)
        if n_val < 2 or len(a) - n_val < 2:
            raise DataError(f"{len(a)} pairs leave {n_val} for validation and {len(a) - n_val} for training; "
                            "InfoNCE needs at least 2 in each. Fix: more pairs or another validation_fraction.")
        val, train = order[:n_val], order[n_val:]
        a_val, b_val, a_train, b_train = a[val], b[val], a[train], b[train]
        optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        # the state before fitting competes too: a fit that never lowers the validation loss changes nothing
        best_loss, best_state, self.best_epoch = self.evaluate_loss(a_val, b_val, batch_size), self._state(), 0
        history, stale = [], 0
        bar = tqdm(range(1, epochs + 1), desc="fitting projection", unit="epoch", leave=False, disable=None if progress else True)
        for epoch in bar:
            self.train()
            total = 0.0
            batches = torch.randperm(len(a_train), generator=generator).split(batch_size)
            for rows in batches:
                if len(rows) < 2:  # a single pair has no negative: no signal
                    continue
                if world > 1:  # each task embeds its share of the batch; the loss sees the whole batch
                    mine = rows.tensor_split(world)[dist.get_rank()]
                    za, zb = gather_rows(self.forward_a(a_train[mine])), gather_rows(self.forward_b(b_train[mine]))
                else:
                    za, zb = self.forward_a(a_train[rows]), self.forward_b(b_train[rows])
                loss = self.loss(za, zb)
                optimizer.zero_grad()
                loss.backward()
                if world > 1:
                    average_gradients(self.parameters(), world)
                optimizer.step()
                total += loss.item() * len(rows)
            self.eval()
            val_loss = self.evaluate_loss(a_val, b_val, batch_size)
            history.append({"epoch": epoch, "train_loss": total / len(a_train), "val_loss": val_loss})
            bar.set_postfix(val_loss=f"{val_loss:.4f}")
            if val_loss < best_loss:
                best_loss, best_state, self.best_epoch, stale = val_loss, self._state(), epoch, 0
            else:
                stale += 1
                if stale >= patience:
                    break
        bar.close()
        self.load_state_dict(best_state)
        return history


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """Every task's rows, in rank order, with gradients flowing back to each task's own rows."""
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(z)]))
    sizes = [int(n) for n in sizes]
    padded = F.pad(z, (0, 0, 0, max(sizes) - len(z)))  # all_gather needs equal shapes
    return torch.cat([part[:n] for part, n in zip(all_gather(padded), sizes)])


def average_gradients(parameters, world: int):
    """Each task's backward of the same whole-batch loss yields world x its rows' share; the sum over tasks, over
    world, is the one-process gradient."""
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def check_fit_options(epochs, batch_size, lr, weight_decay, validation_fraction, patience):
    for key, value in (("projection.fit.epochs", epochs), ("projection.fit.batch_size", batch_size),
                       ("projection.fit.patience", patience)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, value, "must be a positive integer", f"set {key} as in conf/projection/contrastive.yaml")
    if batch_size < 2:
        raise ConfigError("projection.fit.batch_size", batch_size, "InfoNCE needs at least 2 pairs per batch",
                          "set projection.fit.batch_size=256")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError("projection.fit.lr", lr, "must be positive", "set projection.fit.lr=1e-3")
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ConfigError("projection.fit.weight_decay", weight_decay, "must be >= 0",
                          "set projection.fit.weight_decay=1e-4")
    if not isinstance(validation_fraction, (int, float)) or not 0 < validation_fraction < 1:
        raise ConfigError("projection.fit.validation_fraction", validation_fraction,
                          "must be in (0, 1): early stopping needs held-out pairs",
                          "set projection.fit.validation_fraction=0.1")


FIT_DEFAULTS = {"epochs": 200, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "validation_fraction": 0.1,
                "patience": 10}


class StreamProjection:
    """When a ContrastiveProjection is fitted in a stream (`policy`, one of FREEZE_POLICIES; see the module doc).

    Call `before_experience(t, pairs_a, pairs_b)` before experience t is observed, with the paired features of
    its training samples; it returns whether the projection changed, in which case every feature the memory is
    given or tested with from then on must be `transform`ed again.
    """

    def __init__(self, policy: str, head: ContrastiveProjection, fit: dict | None = None):
        if policy not in FREEZE_POLICIES:
            raise ConfigError("projection.policy", policy, f"must be one of {FREEZE_POLICIES}",
                              "set projection.policy=first_experience")
        unknown = sorted(set(fit or {}) - set(FIT_DEFAULTS))
        if unknown:
            raise ConfigError("projection.fit", dict(fit), f"unknown option(s) {unknown}",
                              f"use only {sorted(FIT_DEFAULTS)}")
        self.policy, self.head = policy, head
        self.fit_options = {**FIT_DEFAULTS, **(fit or {})}
        check_fit_options(**self.fit_options)  # fail at build time, not after encoding
        self.fits = []  # (experience, loss history) of every fit, for the results

    def should_fit(self, t: int) -> bool:
        return self.policy == "stream" or (self.policy == "first_experience" and not self.fits)

    def before_experience(self, t: int, pairs_a=None, pairs_b=None) -> bool:
        if not self.should_fit(t):
            return False
        if pairs_a is None or pairs_b is None:
            raise DataError(f"projection policy {self.policy} fits on experience {t}'s pairs, but none were given. "
                            "Fix: pass the paired features of the experience's training samples.")
        history = self.head.fit(pairs_a, pairs_b, **self.fit_options)
        self.fits.append({"experience": t, "best_epoch": self.head.best_epoch, "history": history})
        return self.head.best_epoch > 0  # best epoch 0: the head kept its state, nothing changed

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Modality-a features (the stream's own) in the projected space."""
        return self.head.project_a(x)

    def transform_b(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.project_b(x)


def stream_projection(dim_a: int, dim_b: int | None = None, policy: str = "first_experience",
                      projection_dim: int = 256, temperature: float = 0.07, learn_temperature: bool = False,
                      seed: int = 0, checkpoint: str | None = None, fit: dict | None = None,
                      pair_dataset=None, pair_encoder=None) -> StreamProjection:
    """The `_target_` of conf/projection/contrastive.yaml; the entry point passes dim_a (the stream encoder's).

    `pair_dataset` and `pair_encoder` give modality b: a dataset with the same samples (same ids, same split)
    as the run's, e.g. the report texts of report pages; dim_b defaults to the pair encoder's dim.

    `checkpoint`: a state dict saved with torch.save(head.state_dict()), loaded before the stream (usually with
    policy frozen). Without one the head starts from its seeded random init.
    """
    if dim_b is None:
        if pair_encoder is None:
            raise ConfigError("projection.pair_encoder", None, "modality b needs an encoder (or dim_b)",
                              "set projection.pair_encoder, e.g. the minilm encoder config")
        dim_b = pair_encoder.dim
    head = ContrastiveProjection(dim_a, dim_b, projection_dim, temperature, seed, learn_temperature)
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ConfigError("projection.checkpoint", checkpoint, "no such file",
                              "set projection.checkpoint to a saved head.state_dict(), or null")
        try:
            head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError) as e:
            raise ConfigError("projection.checkpoint", checkpoint, f"does not fit this head ({e})",
                              "use the dims, projection_dim and learn_temperature it was saved with") from e
    elif policy == "frozen":
        log.warning("projection.policy=frozen without a checkpoint: the stream uses the random init "
                    "(a control, not an aligned projection)")
    projection = StreamProjection(policy, head, fit)
    projection.pair_dataset, projection.pair_encoder = pair_dataset, pair_encoder
    return projection


def paired_features(projection: StreamProjection, cache, splits) -> torch.Tensor:
    """Modality-b features of the run's training samples, row for row (checked by sample id)."""
    if projection.pair_dataset is None or projection.pair_encoder is None:
        raise ConfigError("projection.pair_dataset", None, "fitting needs the paired modality",
                          "set projection.pair_dataset and projection.pair_encoder (conf/projection/contrastive.yaml)")
    pair = projection.pair_dataset.load()
    if pair.train.ids != splits.train.ids:
        raise ConfigError("projection.pair_dataset", pair.name, f"its training samples are not those of {splits.name} "
                          "(sample ids differ)", "pair a dataset with the same samples and split, e.g. "
                          "iu_xray_reports with iu_xray_pages")
    from neurocl.encoders.base import check_accepts

    check_accepts(projection.pair_encoder, pair.modality, f"pair dataset {pair.name}")
    return cache.features(projection.pair_encoder, pair.train, pair.name, "train")
