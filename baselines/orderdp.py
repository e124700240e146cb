"""``orderdp``: OrderDP (Jin, Xu, Wang, Jia, Chen & Zeng, ICLR 2026, "OrderDP: A Theoretically Guaranteed
Lossless Dynamic Data Pruning Framework", https://openreview.net/forum?id=e77QyyRQPz; official code
shengze-xu/OrderDP, commit b48eacc: ``cifar/orderDP/orderDP.py``, ``OrderDP.prune`` and ``IBSampler.reset``;
``imagenet/orderdp_dataloader.py`` the same rule). Pruner and published schedule in one file.

The paper [abstract]: first draw a random subset, then keep the top-``q`` samples of it; unbiased with respect
to a surrogate loss, with exact control of the saving. The rule, per epoch, with ``N`` samples [code]:

1. draw a subset ``S`` of ``s`` samples uniformly without replacement (numpy's ``choice(N, s, replace=False)``);
2. keep the ``q`` samples of ``S`` with the largest score (``torch.topk(largest=True)``; all of ``S`` when
   ``q = s``). Score: the latest unweighted per-sample training loss (its criterion, label smoothing
   included; no EMA), stale for samples not trained since; every score starts equal (3 on CIFAR, 1 on
   ImageNet), so epoch 0 keeps a uniform ``q`` of ``S``, and a sample never trained keeps that start, above
   a 10-class model's usual losses, so the top-``q`` prefers it. Here ``ScoreTable.loss`` where
   ``ScoreTable.observed``, :data:`INITIAL_SCORE` ``= 3`` (the CIFAR code's) for a sample never trained;
3. no loss reweighting (the CIFAR ``update`` returns the plain mean; the ImageNet weights stay 1; the paper's
   inclusion probabilities ``p_j`` below appear only in commented-out code); the kept set is shuffled.

The sample ranked ``j``-th by loss (``j = 1`` the largest) is kept with probability
``p_j = (s / N) * sum_{l <= q} C(j-1, l-1) C(N-j, s-l) / C(N-1, s-1)`` (the code's commented-out
``compute_expression``): the surrogate objective is ``sum_j p_j loss_(j)``. Kept fraction ``q / N``.
No warm-up and no annealing: every epoch prunes, epoch 0 too (the sampler's ``stop_prune = delta * E`` test
calls ``prune()`` in both branches, the full-data branch commented out) [code].

The official knobs are ``random_len_ratio`` ``a`` and ``top_q_ratio`` ``b``: ``s = int(a N)``,
``q = int(b s)`` (float products truncated). Here the action's components are the prune ratio ``r`` (the
main knob, calibrated like the others' ratios) and ``top_q_ratio`` ``b``; ``a = (1 - r) / b`` follows:

- ``q = K = kept_count(N, r) = ceil((1 - r) N)``, exactly the realised kept count [recon: the official
  ``int(b int(a N))`` can keep fewer than ``a b N``: 5, not 6, at ``N = 10, a = 0.75, b = 0.8``];
- ``s = min(N, ceil(K / b))`` (the ceiling less round-off, :func:`subset_size`) [recon]; ``b = 1`` is uniform
  random pruning (``s = K``), and ``b <= 1 - r`` is ``S`` = all ``N``: the top ``K`` by loss (the official
  code needs ``a <= 1``, so ``b >= 1 - r``). ``(r, b) = (1 - q / N, q / s)`` reproduces the official
  ``(s, q)`` of any ``(a, b)`` with ``q > 0``;
- ties: ``torch.topk`` leaves their order unspecified; here a stable sort of ``S`` in its random draw order,
  so tied samples are kept uniformly at random [recon]; the draws come from the pruner's generator (the
  official code reseeds numpy's global RNG with the epoch number every epoch: not reproduced).

``r = 0`` gives the full data. ``claimed_prune_ratio`` is ``r``; the realised fraction ``K / N``. No host
sync: the counts are host arithmetic on ``N``, ``r`` and ``b``; the draw and the sort stay on the device.
Published settings [code; the paper's text was not available to check]: the README's CIFAR-100 command
``a = 0.8, b = 0.375`` (``r = 0.7``, the defaults of :class:`OrderDPPolicy`); ImageNet ResNet-50
``a = 0.75, b = 0.8`` (``r = 0.4``) and ResNet-18 ``a = 0.8, b = 0.9`` (``r = 0.28``); the class defaults
``a = 0.75, b = 0.85``. Cost: no extra pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Knob, Pruner, kept_count

__all__ = ["INITIAL_SCORE", "OrderDPPolicy", "OrderDPPruner", "subset_size"]

INITIAL_SCORE = 3.0  # the score of a sample never trained (the official CIFAR code's start; ImageNet's is 1)


def subset_size(num_samples: int, num_kept: int, top_q_ratio: float) -> int:
    """``s``, the size of the random subset: ``min(N, ceil(K / b))``, at least ``K``, with ``num_kept`` ``K``
    and ``top_q_ratio`` ``b`` in (0, 1]; a quotient within round-off of a whole number is that number
    (``30 / 0.3`` is 100, not 101)."""
    x = num_kept / top_q_ratio
    nearest = round(x)
    s = nearest if abs(x - nearest) <= 1e-9 * max(1.0, x) else math.ceil(x)
    return min(num_samples, max(num_kept, s))


class OrderDPPruner(Pruner):
    """OrderDP's random subset, then its top-``K`` by the latest loss (see the module docstring); no
    constructor arguments. ``last_subset``: the last pruned plan's subset ``S`` ``[s]`` int64, in draw order."""

    name = "orderdp"
    knobs = (
        Knob(
            "top_q_ratio",
            0.1,
            1.0,
            0.375,
            "share of the random subset kept, highest loss first (the subset is K / top_q_ratio samples): "
            "1 is uniform random pruning, at most 1 - r keeps the top K by loss of all samples",
        ),
    )

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        self.last_subset = torch.zeros(0, dtype=torch.int64, device=self.device)

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        b = self.knob(action, "top_q_ratio")
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"prune_ratio={action['prune_ratio']!r} is out of range [0, 1]")
        if not 0.0 < b <= 1.0:
            raise ValueError(f"top_q_ratio={b!r} is out of range (0, 1]")
        if r <= 0.0:
            return self.full_plan()
        n = self.num_samples
        k = kept_count(n, r)
        s = subset_size(n, k, b)
        subset = torch.randperm(n, generator=self.generator, device=self.device)[:s]  # [s], in draw order
        self.last_subset = subset
        kept = subset
        if k < s:
            loss = scores.loss.to(self.device)[subset]  # [s]
            loss = torch.where(scores.observed.to(self.device)[subset], loss, torch.full_like(loss, INITIAL_SCORE))
            kept = subset[torch.argsort(loss, descending=True, stable=True)[:k]]  # ties: the earlier drawn
        plan = self.shuffled(kept)
        plan.claimed_prune_ratio = r
        return plan


class OrderDPPolicy(FixedPolicy):
    """OrderDP's schedule [code]: prune ratio ``r`` and ``top_q_ratio`` ``b`` at every epoch, from the first
    (no warm-up, no annealing). Defaults from the README's CIFAR-100 command (``random_len_ratio = 0.8``,
    ``top_q_ratio = 0.375``): ``r = 0.7``, ``b = 0.375``."""

    name = "orderdp"
    pruner = "orderdp"
    defaults = {"prune_ratio": 0.7, "top_q_ratio": 0.375}
    main_knob = "prune_ratio"
    main_knob_range = None  # the env's (DEFAULT_MAX_PRUNE_RATIO, 0): any ratio's K is kept exactly

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "top_q_ratio": self.hparams["top_q_ratio"]}
