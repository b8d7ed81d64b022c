"""Several frozen encoders as one concept: their features side by side.

    z = [ u(member_1(x)), ..., u(member_M(x)) ] / sqrt(M)

u() scales each member's features to unit norm, so every member weighs the same whatever its scale, and the
cosine of two samples is the mean of the members' cosines. Backbones trained differently make different
mistakes: on Split-FashionMNIST three EfficientNet-Lite models side by side beat the best one alone
(experiments/encoders). The feature cache keeps each member's features under the member's own key, so an
ensemble of encoders already cached costs no encoding at all.
"""

import math

import torch

from neurocl.encoders.base import unit_norm
from neurocl.errors import ConfigError


class Ensemble:
    def __init__(self, members: dict):
        if len(members) < 2:
            raise ConfigError("encoder.members", list(members), "an ensemble needs at least two members",
                              "list two or more encoders under encoder.members (conf/encoder/ensemble.yaml)")
        self.members = list(members.values())
        self.accepts = tuple(m for m in self.members[0].accepts if all(m in e.accepts for e in self.members))
        if not self.accepts:
            raise ConfigError("encoder.members", [e.name for e in self.members], "the members share no modality",
                              "choose members that encode the same kind of sample")
        self.name = "+".join(e.name for e in self.members)
        self.dim = sum(e.dim for e in self.members)
        self.batch_size = min(e.batch_size for e in self.members)

    def cache_key(self) -> dict:
        keys = [e.cache_key() for e in self.members]
        return {"name": "ensemble", "members": keys, "fusion": "concat of unit-norm parts / sqrt(M)",
                "device": "+".join(k["device"] for k in keys), "dtype": "+".join(k["dtype"] for k in keys)}

    def combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The members' features of the same samples (in member order) -> the ensemble's."""
        return torch.cat([unit_norm(p) for p in parts], dim=1) / math.sqrt(len(parts))

    @torch.no_grad()
    def encode(self, batch) -> torch.Tensor:
        return self.combine([e.encode(batch).float().cpu() for e in self.members])
