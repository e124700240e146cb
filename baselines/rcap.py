"""``rcap``: RCAP, Robust Class-Aware Probabilistic dynamic dataset pruning (Hassan, Khare & Paik, UAI 2025,
PMLR 286:1648-1662; official code atif-hassan/RCAP-dynamic-dataset-pruning, the ``datacull`` package 1.0.2,
``datacull/methods/RCAP.py``: ``RCAPImportance.compute_importance`` and ``RCAPDataLoader.compute_subset``).
Pruner and published schedule in one file.

The paper [abstract]: a closed-form keep fraction per class, adjusted every epoch from class-wise aggregated
loss, then sampling that favours high-loss samples within each class. The rule, from the code, per epoch with
``N`` samples in ``C`` classes (the distinct training labels, ``ScoreTable.labels``), ``n_c`` in class ``c``,
prune ratio ``r`` and temperature ``beta`` (the action's two components) [code]:

1. loss ``l_i``: the latest unweighted per-sample loss (``ScoreTable.loss``, stale for samples not trained
   since), ``tau`` for a sample never trained (the official start), clipped to ``[0, tau]``;
   ``tau = log C`` unless the pruner is given ``clipping_threshold``;
2. importance ``p_i = softmax(l / beta)`` within the sample's class (it sums to 1 over each class);
3. class loss ``L_c``: the sum of ``p_i`` over the class's samples trained in the previous epoch (all of them
   before the first: ``L_c = 1``); ``a_c = sqrt(L_c * n_c / N)``;
4. ``K = kept_count(N, r)`` (the code's ``required_num_samples``; its loader's ``pruning_rate`` is the keep
   fraction ``1 - r``, as the authors' notebook passes it); class ``c`` gets ``x_c = K a_c / sum(a)`` samples;
   a class whose ``x_c`` exceeds ``n_c`` keeps all ``n_c``, and the classes not full share what is left,
   ``K' = K - (the full classes' samples)``, in proportion to their ``a_c``, until none exceeds its size;
5. class ``c`` keeps ``k_c = ceil(x_c)`` samples drawn without replacement with probability ``p_i`` (numpy's
   weighted ``choice``: successive draws renormalised over the rest); here Gumbel-top-``k_c`` of
   ``l_i / beta`` from the pruner's generator, the same distribution.

No loss reweighting (weights stay 1); the kept set is shuffled. No warm-up and no annealing: every epoch
prunes, epoch 0 too (equal losses: uniform within each class, class shares ``sqrt(n_c / N)``).
Defaults of the authors' example (``examples/pytorch-lightning/rcap.ipynb``): ``r = 0.8``, ``beta = 1/4``;
the code suggests ``beta`` in {1/3, 1/2, 1, 2, 3} (the knob spans [1/4, 4] on a log scale). Cost: no extra pass.

Where this differs from the code [recon]:

- step 4: the official loop decrements a local ``required_num_samples`` (``RCAP.py`` line 112) but shares
  ``self.required_num_samples``, the whole ``K``, among the other classes (line 113), so a full class's samples
  count twice and the epoch keeps more than ``K`` (classes of 300 and 100 at ``r = 0.2``: all 400, not 320).
  Here the remainder ``K'`` is shared, so the epoch keeps ``K`` up to step 5's rounding (at most ``C - 1``
  more), and each round re-solves every class not yet full (the official loop leaves a class at exactly 1 out);
- counts: the official ``K = ceil(keep * N)`` of the float ``keep = 1 - r`` keeps 31 of 100 at ``r = 0.7``
  (``0.30000000000000004 * 100``); here ``K = kept_count(N, r)`` (30), and ``k_c`` is the ceiling of ``x_c``
  less ``1e-9`` likewise, at least 1 for ``x_c > 0`` (the official ceiling keeps every class);
- the previous epoch's samples are those that reached the loss (``EpochResult.indices``: the plan unless a
  budget cut it); a class none of whose samples did counts as whole (``L_c = 1``, as at the start); the
  official code never meets this, since every class keeps at least one sample;
- classes are the distinct labels present (the official code takes ``0 .. C - 1``, ``C`` the number of distinct
  labels); every label must be known: RCAP refuses ``-1`` (unknown) labels.

``r = 0`` gives the full data. ``claimed_prune_ratio`` is ``r``; the realised kept fraction is the engine's.
The class arithmetic (``C`` numbers, float64 as numpy's) runs on the host: three syncs per epoch, never per batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import EpochLosses, FixedPolicy, Knob, Pruner, kept_count

__all__ = ["RCAPPolicy", "RCAPPruner", "class_counts", "class_shares"]


def class_shares(class_loss: list[float], sizes: list[int], keep: int) -> list[float]:
    """``x_c``, the samples class ``c`` gets (step 4): ``keep`` shared in proportion to
    ``a_c = sqrt(L_c * n_c / N)`` with ``class_loss`` ``[C]`` (``L_c``) and ``sizes`` ``[C]`` (``n_c``), a
    class with more than its size capped at it and the rest re-shared among the others."""
    n = sum(sizes)
    a = [math.sqrt(lc * nc / n) for lc, nc in zip(class_loss, sizes)]
    full = [False] * len(sizes)
    while True:
        left = keep - sum(nc for nc, f in zip(sizes, full) if f)
        total = sum(ac for ac, f in zip(a, full) if not f)
        x = [float(nc) if f else (left * ac / total if total > 0 else 0.0) for ac, nc, f in zip(a, sizes, full)]
        over = [not f and xc > nc for xc, nc, f in zip(x, sizes, full)]
        if not any(over):
            return x
        full = [f or o for f, o in zip(full, over)]


def class_counts(shares: list[float], sizes: list[int]) -> list[int]:
    """``k_c = ceil(x_c - 1e-9)`` (at least 1 for ``x_c > 0``, at most ``n_c``) of ``shares`` ``[C]``."""
    return [min(nc, max(int(xc > 0), math.ceil(xc - 1e-9))) for xc, nc in zip(shares, sizes)]


class RCAPPruner(Pruner):
    """RCAP's class-wise keep counts and loss-weighted sampling within classes (see the module docstring).
    Constructor: ``clipping_threshold`` (``tau``, > 0; default None: ``log C``)."""

    name = "rcap"
    knobs = (
        Knob(
            "beta",
            0.25,
            4.0,
            0.25,
            "softmax temperature of the within-class importance softmax(loss / beta): small favours high loss",
            log=True,
        ),
    )

    def __init__(self, clipping_threshold: float | None = None):
        tau = clipping_threshold
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf):
            raise ValueError(f"clipping_threshold={clipping_threshold!r} must be a finite number > 0 or None")
        self.clipping_threshold = clipping_threshold

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        self.last_trained = torch.ones(self.num_samples, dtype=torch.bool, device=self.device)  # [N]
        self.last_counts: list[int] = []  # k_c of the last pruned plan, classes in label order (for reports)

    def classes(self, scores: ScoreTable) -> tuple[torch.Tensor, list[int]]:
        """``(class index [N] int64 in 0 .. C - 1, sizes [C])`` of the labels in ascending order; refuses
        unknown (-1) labels."""
        labels = scores.labels.to(self.device)
        values, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        sizes = counts.tolist()  # host syncs: the class sizes and the smallest label
        if int(values[0]) < 0:
            raise ValueError(
                f"rcap needs each sample's training label (scores.labels), but {sizes[0]} of "
                f"{self.num_samples} are unknown (-1)"
            )
        return inverse, sizes

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        beta = self.knob(action, "beta")
        cls, sizes = self.classes(scores)
        if r <= 0.0:
            return self.full_plan()
        c = len(sizes)
        tau = self.clipping_threshold if self.clipping_threshold is not None else math.log(c)
        loss = scores.loss.to(self.device, torch.float64)
        loss = torch.where(scores.observed.to(self.device), loss, torch.full_like(loss, tau)).clamp(0.0, tau)
        z = loss / beta  # [N]
        z_max = torch.full((c,), -math.inf, dtype=torch.float64, device=self.device).scatter_reduce(0, cls, z, "amax")
        e = torch.exp(z - z_max[cls])
        p = e / torch.zeros(c, dtype=torch.float64, device=self.device).index_add(0, cls, e)[cls]  # softmax per class
        trained = torch.zeros(c, dtype=torch.float64, device=self.device)
        trained.index_add_(0, cls, torch.where(self.last_trained, p, torch.zeros_like(p)))
        seen = torch.zeros(c, dtype=torch.float64, device=self.device).index_add_(0, cls, self.last_trained.double())
        class_loss = torch.where(seen > 0, trained, torch.ones_like(trained)).tolist()  # host sync (C numbers)
        counts = class_counts(class_shares(class_loss, sizes, kept_count(self.num_samples, r)), sizes)
        self.last_counts = counts
        kept = self.draw(cls, z, sizes, counts)
        plan = self.shuffled(kept)
        plan.claimed_prune_ratio = r
        return plan

    def draw(self, cls: torch.Tensor, z: torch.Tensor, sizes: list[int], counts: list[int]) -> torch.Tensor:
        """``counts[c]`` distinct indices of each class ``c`` drawn with probability ``softmax(z)`` in the class,
        without replacement (Gumbel-top-k on ``z`` ``[N]``, from the pruner's generator)."""
        u = torch.rand(z.shape, generator=self.generator, device=self.device, dtype=torch.float64)
        keys = z - torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)))
        order = torch.argsort(keys, descending=True)
        order = order[torch.argsort(cls[order], stable=True)]  # by class, the largest keys first in each
        size = torch.tensor(sizes, device=self.device)
        start = torch.cumsum(size, 0) - size
        rank = torch.arange(order.numel(), device=self.device) - start[cls[order]]
        return order[rank < torch.tensor(counts, device=self.device)[cls[order]]]

    def update(self, result: EpochLosses, scores: ScoreTable) -> None:
        """Remember the samples that reached the loss (the next plan's ``L_c`` sums over them)."""
        trained = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
        trained[result.indices.to(self.device)] = True
        self.last_trained = trained


class RCAPPolicy(FixedPolicy):
    """RCAP's schedule [code]: prune ratio ``r`` and temperature ``beta`` at every epoch, from the first (no
    warm-up, no annealing). Defaults of the authors' example notebook: ``r = 0.8``, ``beta = 1/4``."""

    name = "rcap"
    pruner = "rcap"
    defaults = {"prune_ratio": 0.8, "beta": 0.25}
    sampler_unfit = "needs each sample's training label (scores.labels)"

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "beta": self.hparams["beta"]}
