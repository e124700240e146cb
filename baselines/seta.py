"""``seta``: SeTa, Scale Efficient Training (Zhou, Gao & Wang, CVPR 2025, arXiv 2503.13385; official code
mrazhou/SeTa, ``seta.py``, class ``SeTa``); see ``shared/METHODS.md``. Pruner and published schedule in one
file.

Per epoch, with ``N`` samples, prune ratio ``r`` and window scale ``w`` (the action's two components) [code]:

1. keep ratio ``keep = min(1, max(0.1, 1 - r))`` (as InfoBatch's); keep a uniformly random ``int(N * keep)``
   of all ``N`` samples;
2. cluster those samples' scores into ``num_group`` groups, sorted by centre from easy (low loss) to hard.
   Score: the latest unweighted per-sample loss of each sample when it was last trained (``ScoreTable.loss``);
   a sample never trained (``ScoreTable.observed`` False: no loss of its own recorded yet) scores
   :data:`INITIAL_SCORE` ``= 3`` [code: the official ``seta.py`` (mrazhou/SeTa, commit 341df62), line 112:
   ``InfoBatch.__init__`` sets every score to ``torch.ones(N) * 3``, which ``SeTa.__init__`` inherits at line
   281; line 135 overwrites a trained sample's score with its loss]. With ``r > 0`` the first epoch (``t = 0``)
   trains only the random keep, so at ``t = 1`` the others still score 3: above a 10-class model's usual
   losses, in the hard groups the window at ``t = 1`` keeps (a score of 0 would put them in the easiest group,
   which it drops). When all the scores are equal the groups are the chunks ``torch.chunk`` makes of
   the random keep, which may be fewer than ``num_group`` (e.g. 6 samples in 5 groups give 3 chunks of 2);
   the window then uses the real number of groups ``G``, as the official code does. ``num_group = 1``: one
   group;
3. sliding window easy -> hard: ``window = round(G * w)`` groups (Python's rounding: ``round(4.5) = 4``),
   ``slide = G - window``; at the ``t``-th windowed epoch (``t = 0, 1, ...``) ``t = 0`` keeps every group,
   later ones keep groups ``[t mod (slide + 1), that + window)``: both too-easy and too-hard groups leave.
   An empty selection keeps one sample drawn uniformly from all ``N``, as the official code does.

No loss reweighting (weights stay 1); the kept set is shuffled. ``t`` (the window position) is the pruner's
state: it counts the epochs planned with ``w < 1``. At ``w = 1`` the window covers every group whatever
``t`` is, so the plan is the random keep of step 1 alone: that is SeTa's partial annealing (epochs after
``delta * E`` train on a random ``int(N * keep)``), and :class:`SeTaPolicy` schedules it by sending
``window_scale = 1`` there; like the official annealing epochs it does not advance ``t``.
``claimed_prune_ratio`` is ``min(r, 0.9)``, the method's own ratio; the window removes more, which the
realised kept fraction shows.

k-means [recon: the official code calls scikit-learn's ``KMeans(n_clusters=num_group, random_state=0)`` on
the CPU]: here exact-in-1-D Lloyd iterations on the training device, no scikit-learn and no host sync inside
(:func:`kmeans_1d`): greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's
``2 + int(log k)`` candidates per centre, keeping the one that lowers the potential most) from the pruner's
generator, one initialisation (scikit-learn's ``n_init="auto"`` for k-means++), then :data:`LLOYD_ITERATIONS`
Lloyd steps (a fixed number, where scikit-learn stops at a tolerance) on the sorted scores, where
a step's assignment is the intervals between the midpoints of the sorted centres (``searchsorted``; a point
on a midpoint goes to the lower centre, as scikit-learn's ``argmin`` does) and its update the interval means
from a prefix sum. An empty group keeps its centre and stays in the count ``G = num_group`` (the official
code also keeps ``num_group`` groups then). On well-separated scores the partition is scikit-learn's
(checked in ``tests/test_baselines_seta.py``). The plan syncs with the host a few times per epoch (the all-equal
test and the window's two group boundaries), never per batch.

``score="batch"``: the batch loss score (BLS; Zhou, Zhao, Yang, Zhang, Gao & Wang, CVPR 2026, official code
mrazhou/BLS, ``seta.py`` at commit 726279b, class ``BLS``, which wraps a ``SeTa`` instance) replaces the latest
per-sample loss in step 2, for loops that give one loss per batch: ``ScoreTable.batch_score``, the EMA
``s <- 0.9 s + 0.1 L`` of the unweighted mean loss ``L`` of each batch the sample was in [code: lines 409-410,
374]. BLS sets every score to 0 (line 384, over the 3 that file's ``InfoBatch`` sets at line 137), so a sample
in no batch yet scores 0, not :data:`INITIAL_SCORE`: at ``t = 1`` the samples the first epoch did not train fall
in the easiest group, which the window drops. SeTa applies no weights, so the official ``mean(weights) * L`` it
backpropagates is ``L``.

Where the official code fails (``int(N * keep) <= num_group`` asserts; ``round(G * w) = 0`` asserts) this
one goes on: k-means runs with empty groups, and the window is at least one group [recon].
Defaults of the authors' CIFAR script: ``r = 0.1``, ``num_group = 5``, ``window_scale = 0.9``, ``delta = 0.875``.
Cost: no extra pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Knob, Pruner
from .infobatch import MAX_PRUNE_RATIO, check_score, keep_ratio, loss_score, prunes_at

__all__ = ["INITIAL_SCORE", "LLOYD_ITERATIONS", "SeTaPolicy", "SeTaPruner", "kmeans_1d", "window_groups"]

LLOYD_ITERATIONS = 100
INITIAL_SCORE = 3.0  # the score of a sample never trained (the official seta.py, line 112)


@torch.no_grad()
def kmeans_1d(
    values: torch.Tensor, k: int, generator: torch.Generator, iterations: int = LLOYD_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means of ``values`` ``[m]`` (sorted ascending, ``m >= 1``) into ``k`` groups, on their device.

    Returns ``(centres [k] float64 ascending, bounds [k + 1] int64)``: group ``j`` is
    ``values[bounds[j]:bounds[j + 1]]`` (possibly empty). k-means++ seeding from ``generator`` (on the
    values' device; greedy, ``2 + int(log k)`` candidates per centre), then ``iterations`` Lloyd steps; no host
    sync.
    """
    v = values.to(torch.float64)
    m, dev = v.numel(), v.device
    pick = torch.randint(m, (1,), generator=generator, device=dev)
    chosen = [pick]
    d2 = (v - v[pick]).square()
    trials = 2 + int(math.log(k))  # scikit-learn's number of local trials
    for _ in range(1, k):
        w = torch.where(d2.sum() > 0, d2, torch.ones_like(d2))  # fewer distinct values than k: uniform
        candidates = torch.multinomial(w, trials, replacement=True, generator=generator)  # [L]
        new_d2 = torch.minimum(d2, (v - v[candidates, None]).square())  # [L, m]
        best = new_d2.sum(1).argmin(0, keepdim=True)  # the candidate that lowers the potential most
        chosen.append(candidates[best])
        d2 = new_d2[best[0]]
    centres = torch.sort(v[torch.cat(chosen)]).values
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64, device=dev), torch.cumsum(v, 0)])
    ends = torch.tensor([0, m], dtype=torch.int64, device=dev)

    def bounds_of(c: torch.Tensor) -> torch.Tensor:
        inner = torch.searchsorted(v, 0.5 * (c[1:] + c[:-1]), right=True)  # v <= midpoint: the lower centre
        return torch.cat([ends[:1], inner, ends[1:]])

    for _ in range(iterations):
        b = bounds_of(centres)
        counts = (b[1:] - b[:-1]).to(torch.float64)
        sums = prefix[b[1:]] - prefix[b[:-1]]
        centres = torch.sort(torch.where(counts > 0, sums / counts.clamp_min(1.0), centres)).values
    return centres, bounds_of(centres)


def window_groups(num_groups: int, window_scale: float, t: int) -> tuple[int, int]:
    """``(first, end)``: the groups ``first <= j < end`` kept at the ``t``-th windowed epoch [code]."""
    if t == 0:
        return 0, num_groups
    window = min(num_groups, max(1, round(num_groups * window_scale)))  # official asserts window > 0
    slide = num_groups - window
    first = t % (slide + 1)
    return first, first + window


class SeTaPruner(Pruner):
    """SeTa's random keep, 1-D k-means of the kept samples' losses and sliding easy-to-hard window (see the
    module docstring). Constructor: ``num_group`` (default 5), ``lloyd_iterations``, ``score`` (``"sample"``,
    the default, or ``"batch"``: the batch loss score)."""

    name = "seta"
    knobs = (
        Knob(
            "window_scale",
            0.1,
            1.0,
            0.9,
            "share of the loss groups kept by the sliding window: round(num_group * w) of them; 1 keeps all "
            "(the partial-annealing epochs)",
        ),
    )

    def __init__(self, num_group: int = 5, lloyd_iterations: int = LLOYD_ITERATIONS, score: str = "sample"):
        for name, v in (("num_group", num_group), ("lloyd_iterations", lloyd_iterations)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an int >= 1")
        self.num_group = num_group
        self.lloyd_iterations = lloyd_iterations
        self.score = check_score(score)

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        self.windowed_epochs = 0  # t: epochs planned so far with window_scale < 1
        self.last_groups: list[int] = []  # sizes of the last windowed epoch's groups, easy to hard (for reports)

    def scores_of(self, scores: ScoreTable) -> torch.Tensor:
        """``[N]`` SeTa's score of every sample: its latest loss, :data:`INITIAL_SCORE` if never trained; with
        ``score="batch"``, its batch loss score (0 if in no batch yet)."""
        if self.score == "batch":
            return loss_score(scores, self.score).to(self.device)
        loss = scores.loss.to(self.device)
        return torch.where(scores.observed.to(self.device), loss, torch.full_like(loss, INITIAL_SCORE))

    def groups(self, scores: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """``(ordered [m], bounds)``: ``candidates`` ``[m]`` reordered so that each group is a contiguous run,
        groups easy to hard; ``bounds`` (host ints, ``G + 1`` of them) delimit the ``G`` groups."""
        s = scores[candidates]
        m = s.numel()
        if self.num_group == 1:
            return candidates, [0, m]
        lo_hi = torch.stack([s.min(), s.max()]).tolist()  # host sync (once per epoch)
        if lo_hi[0] == lo_hi[1]:  # all equal: torch.chunk of the random keep, in its random order
            size = math.ceil(m / self.num_group)
            n_chunks = math.ceil(m / size)
            return candidates, [min(j * size, m) for j in range(n_chunks + 1)]
        order = torch.argsort(s, stable=True)
        _, bounds = kmeans_1d(s[order], self.num_group, self.generator, self.lloyd_iterations)
        return candidates[order], bounds.tolist()

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        w = self.knob(action, "window_scale")
        n = self.num_samples
        m = int(n * keep_ratio(r))
        kept = torch.randperm(n, generator=self.generator, device=self.device)[:m]
        if w < 1.0 and m > 0:
            t = self.windowed_epochs
            self.windowed_epochs += 1
            if t > 0:
                ordered, bounds = self.groups(self.scores_of(scores), kept)
                first, end = window_groups(len(bounds) - 1, w, t)
                self.last_groups = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
                kept = ordered[bounds[first] : bounds[end]]
        if kept.numel() == 0:  # avoid an empty epoch: one sample drawn from all N [code]
            kept = torch.randint(n, (1,), generator=self.generator, device=self.device)
        plan = self.shuffled(kept)
        plan.claimed_prune_ratio = min(r, MAX_PRUNE_RATIO)
        return plan


class SeTaPolicy(FixedPolicy):
    """SeTa's schedule [code]: prune ratio ``r`` and window scale ``w`` on the epochs ``e`` with
    ``e + 1 <= E * delta`` (compared as InfoBatch's sampler does), then partial annealing: the same ``r`` at
    ``window_scale = 1`` (a random ``int(N * keep)``). Defaults of the authors' CIFAR script: ``r = 0.1``,
    ``window_scale = 0.9``, ``delta = 0.875`` (``num_group = 5`` is the pruner's)."""

    name = "seta"
    pruner = "seta"
    defaults = {"prune_ratio": 0.1, "window_scale": 0.9, "delta": 0.875}
    sampler_unfit = "moves its loss window at every plan, the trial plans of budget= too"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.hparams["delta"] <= 1.0:
            raise ValueError(f"delta={self.hparams['delta']!r} must be in [0, 1]")

    def schedule(self, epoch: int) -> dict[str, float]:
        pruning = prunes_at(epoch, self.hparams["delta"], self.epochs)
        return {
            "prune_ratio": self.hparams["prune_ratio"],
            "window_scale": self.hparams["window_scale"] if pruning else 1.0,
        }
