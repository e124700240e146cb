"""``swdpp``: Huang, Zhou, Huang & Ding, "SwDPP", IEEE Signal Processing Letters 31:3034-3038, 2024; see
``shared/METHODS.md``. Only the abstract is public [paper]: pruning as probabilistic sampling instead of hard
removal (a soft selection that follows the learning dynamics), plus a probabilistic Mixup that keeps
information diversity at high prune rates. Everything concrete below is [recon]:

- score ``s`` ``[N]``: the pruner's own EMA of each sample's unmixed loss, rate ``ema_rate`` = 0.3 (first
  observation sets it), updated in :meth:`SwDPPPruner.update` from ``result.indices`` / ``result.losses``
  skipping ``result.mixed`` rows; ``warmup_epochs`` = 1 full-data epoch first;
- ``pi = softmax(s / tau)``, ``tau = std(s)``; ``q = (1 - lam) pi + lam / N`` (knob ``floor`` = lam,
  default 0.2), so every sample keeps inclusion probability at least about ``lam K / N``;
- ``K = ceil((1 - r) N)`` drawn without replacement by Gumbel-top-k on ``log q`` (pruner generator);
- probabilistic Mixup: each kept row, with probability ``m`` (knob ``mix_prob``, default 0.3 = the default
  ``r``; the :class:`SwDPPPolicy` sets ``m = r``), is mixed with a partner
  drawn uniformly from the not-kept samples, own share ``lam_mix ~ Beta(1, 1) = U(0, 1)``; the engine mixes
  inputs and losses (:class:`~prunegym.training.MixupSpec`; unmixed rows: partner = own index, share 1);
- optional importance weights ``1 / (K q_i)`` clipped to ``weight_clip`` (``importance_weights``, off by
  default).

At ``r = 0`` the plan is the full data, unmixed (there is no not-kept sample to mix with).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from prunegym.training import EpochPlan, MixupSpec, ScoreTable, check_fraction

from .base import FixedPolicy, Knob, Pruner, kept_count

__all__ = ["SwDPPPolicy", "SwDPPPruner", "sampling_distribution"]


def sampling_distribution(score: torch.Tensor, floor: float) -> torch.Tensor:
    """``q`` ``[N]``: ``(1 - floor) softmax(s / std(s)) + floor / N`` of scores ``s`` ``[N]`` (sums to 1)."""
    s = score.float()
    tau = s.std(unbiased=False).clamp_min(1e-12)
    pi = torch.softmax((s - s.mean()) / tau, dim=0)
    return (1.0 - floor) * pi + floor / s.numel()


class SwDPPPruner(Pruner):
    name = "swdpp"
    knobs = (
        Knob("floor", 0.0, 1.0, 0.2, "weight lam of the uniform floor in q = (1 - lam) softmax(s/tau) + lam/N"),
        Knob("mix_prob", 0.0, 1.0, 0.3, "probability m that a kept row is mixed with a not-kept sample"),
    )

    def __init__(
        self, ema_rate: float = 0.3, warmup_epochs: int = 1, importance_weights: bool = False, weight_clip: float = 5.0
    ):
        check_fraction(ema_rate, "ema_rate")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0")
        if not weight_clip > 0.0:
            raise ValueError(f"weight_clip={weight_clip!r} must be > 0")
        self.ema_rate = float(ema_rate)
        self.warmup_epochs = int(warmup_epochs)
        self.importance_weights = bool(importance_weights)
        self.weight_clip = float(weight_clip)

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        self.score = torch.zeros(self.num_samples, device=self.device)  # [N] EMA of the unmixed loss
        self.observed = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)

    @torch.no_grad()
    def update(self, result: Any, scores: ScoreTable) -> None:
        """EMA update from ``result.indices`` ``[M]``, ``result.losses`` ``[M]`` and ``result.mixed`` ``[M]``
        bool (any object with these fields, e.g. an :class:`~prunegym.training.EpochResult`)."""
        idx = result.indices.to(self.device, torch.int64)
        own = ~result.mixed.to(self.device, torch.bool)
        idx, loss = idx[own], result.losses.to(self.device, torch.float32)[own]
        a = self.ema_rate
        old = self.score[idx]
        self.score[idx] = torch.where(self.observed[idx], (1.0 - a) * old + a * loss, loss)
        self.observed[idx] = True

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        n, dev, g = self.num_samples, self.device, self.generator
        k = kept_count(n, r)
        if epoch < self.warmup_epochs or k >= n:
            return self.full_plan()
        q = sampling_distribution(self.score, self.knob(action, "floor"))
        u = torch.rand(n, generator=g, device=dev).clamp_(1e-20, 1.0 - 1e-7)
        order = torch.argsort(q.log() - (-u.log()).log(), descending=True)  # Gumbel-top-k: [N]
        kept, rest = order[:k], order[k:]
        weights = None
        if self.importance_weights:
            weights = (1.0 / (k * q[kept])).clamp(max=self.weight_clip)
        perm = torch.randperm(k, generator=g, device=dev)
        plan = EpochPlan(kept[perm], weights[perm] if weights is not None else None, claimed_prune_ratio=r)
        m = self.knob(action, "mix_prob")
        if m > 0.0:
            mix = torch.rand(k, generator=g, device=dev) < m
            partner = rest[torch.randint(0, rest.numel(), (k,), generator=g, device=dev)]
            share = torch.rand(k, generator=g, device=dev)  # Beta(1, 1): the row's own share
            lam = torch.where(mix, share, torch.ones_like(share))
            plan.mixup = MixupSpec(torch.where(mix, partner, plan.indices), lam)
        return plan


# SwDPP's schedule (Huang et al., IEEE SPL 2024) [recon, see :mod:`prunegym.baselines.swdpp`]: a constant
# prune ratio ``r = 0.3`` (the abstract's "70% of the data per epoch"), uniform floor ``lam = 0.2`` and Mixup
# probability ``m = r`` unless ``mix_prob`` is given; the pruner's one warm-up epoch is full data.
class SwDPPPolicy(FixedPolicy):
    name = "swdpp"
    pruner = "swdpp"
    defaults = {"prune_ratio": 0.3, "floor": 0.2, "mix_prob": None}
    sampler_unfit = "mixes kept samples with pruned ones (mix-up partners)"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.hparams["floor"] <= 1.0:
            raise ValueError(f"floor={self.hparams['floor']!r} must be in [0, 1]")
        m = self.hparams["mix_prob"]
        if m is not None and not 0.0 <= m <= 1.0:
            raise ValueError(f"mix_prob={m!r} must be in [0, 1] (or None: equal to prune_ratio)")

    def schedule(self, epoch: int) -> dict[str, float]:
        r = self.hparams["prune_ratio"]
        m = self.hparams["mix_prob"]
        return {"prune_ratio": r, "floor": self.hparams["floor"], "mix_prob": r if m is None else m}
