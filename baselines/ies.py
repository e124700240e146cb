"""``ies``: Instance-dependent Early Stopping (Yuan, Lin, Feng, Han & Liu, ICLR 2025; official code
tmllab/2025_ICLR_IES, ``cifar_main.py``); see ``shared/METHODS.md``. Pruner and published schedule in one file.

Each sample keeps the history of its loss [code]: its unweighted training loss when it is trained and, while it
is excluded, the loss of an extra eval-mode forward pass over all excluded samples at the end of every epoch
(the plan's ``score_after``; the engine charges those passes as scoring compute, ``scoring_forward``, in the
same epoch: the authors' "saved" ratio counts only backpropagated samples, ours counts every pass). After
every epoch, for every sample with at least 3 losses, the second difference
``d = l[-1] - 2 l[-2] + l[-3]`` is appended to its last ``m + k`` differences; once it has ``m + k`` of them,
``a`` = the moving average of ``|d|`` over windows of ``m`` (a running sum, as the code computes it), and the
sample is *mastered* when the sum of the last ``k`` values of ``a`` is below the threshold. Mastered samples
are left out of the next epoch's training; every sample is judged again after every epoch, so an excluded one
comes back as soon as its loss moves. No reweighting; the learning-rate schedule is unchanged.

Faithful details and reconstructions:

- A sample that got no new loss in an epoch still has a second difference appended, computed from its
  unchanged last three losses (the official code does so; in this engine it only happens to a sample neither
  trained nor scored, e.g. under a plan from another pruner).
- The threshold is the action's knob, read when the next epoch is planned: the exclusion of epoch ``e + 1``
  applies epoch ``e + 1``'s threshold to the histories after epoch ``e`` (the same as the official code for a
  fixed threshold, and it lets an agent's threshold act at once). The knob is on a log scale, ``1e-5`` to
  ``1e-1`` (the README's recommended range). The action's prune-ratio component is ignored.
- When no sample is mastered, the official code leaves the previous epoch's exclusion in place (its
  ``if excluded_samples:`` guard skips rebuilding the loaders); we follow the stated rule (nothing is
  excluded then) [recon: the guard reads as an oversight].
- The official code drops the last incomplete batch of its first epoch (``drop_last=True``), skips batches of
  one sample, and scores excluded samples with its training augmentation; the engine trains every planned
  sample and scores un-augmented inputs with the training criterion (see ``EpochPlan.score_after``).

Defaults: threshold ``1e-3`` (CIFAR-10; the code doubles it for CIFAR-100), ``m = 3``, ``k = 1`` (constructor
arguments). State on the training device: ``[N, 3]`` last losses, ``[N, m + k]`` last differences (oldest
first) and counts, updated vectorised; one host sync per epoch (the plan's sizes). ``claimed_prune_ratio`` is
the excluded fraction (the method's own "saved" share of the epoch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Knob, Pruner

__all__ = ["IESPolicy", "IESPruner"]


class IESPruner(Pruner):
    """Leaves out the samples whose loss has stopped curving (see the module docstring). Constructor: ``m``
    (moving-average window, default 3), ``k`` (averages summed, default 1)."""

    name = "ies"
    knobs = (
        Knob(
            "threshold",
            1e-5,
            1e-1,
            1e-3,
            "a sample is left out while the sum of its last k moving averages of |second difference of "
            "loss| is below this (log scale)",
            log=True,
        ),
    )

    def __init__(self, m: int = 3, k: int = 1):
        for name, v in (("m", m), ("k", k)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an int >= 1")
        self.m, self.k = m, k

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        n, f64 = self.num_samples, torch.float64
        self.last_losses = torch.zeros(n, 3, dtype=f64, device=self.device)  # oldest first
        self.num_losses = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.diffs = torch.zeros(n, self.m + self.k, dtype=f64, device=self.device)  # oldest first
        self.num_diffs = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.judgement = torch.full((n,), math.inf, dtype=f64, device=self.device)  # [N]; inf: not judged yet

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        mastered = self.judgement < self.knob(action, "threshold")
        out = torch.nonzero(mastered).view(-1)  # the epoch's one host sync (sizes)
        if out.numel() == 0:
            return self.full_plan()
        plan = self.shuffled(torch.nonzero(~mastered).view(-1))
        plan.score_after = out
        plan.claimed_prune_ratio = out.numel() / self.num_samples
        return plan

    @torch.no_grad()
    def update(self, result, scores: ScoreTable) -> None:
        """Append the epoch's losses (trained rows of ``result.indices`` / ``.losses`` that are not mix-up rows,
        and ``result.scored_indices`` / ``.scored_losses`` if present) and judge every sample again."""
        n, dev, f64 = self.num_samples, self.device, torch.float64
        new = torch.zeros(n, dtype=f64, device=dev)
        got = torch.zeros(n, dtype=torch.bool, device=dev)
        idx = result.indices.to(dev, torch.int64)
        new[idx] = result.losses.detach().to(dev, f64)
        got[idx] = ~result.mixed.to(dev)
        s_idx = getattr(result, "scored_indices", None)
        if s_idx is not None:
            s_idx = s_idx.to(dev, torch.int64)
            new[s_idx] = result.scored_losses.detach().to(dev, f64)
            got[s_idx] = True
        shifted = torch.cat([self.last_losses[:, 1:], new[:, None]], 1)
        self.last_losses = torch.where(got[:, None], shifted, self.last_losses)
        self.num_losses += got.to(torch.int64)
        has3 = self.num_losses >= 3
        l3 = self.last_losses
        d = (l3[:, 2] - 2 * l3[:, 1]) + l3[:, 0]  # l[-1] - 2 l[-2] + l[-3], evaluated as the code does
        self.diffs = torch.where(has3[:, None], torch.cat([self.diffs[:, 1:], d[:, None]], 1), self.diffs)
        width = self.m + self.k
        self.num_diffs = torch.where(has3, (self.num_diffs + 1).clamp(max=width), self.num_diffs)
        a = self.diffs.abs()
        window = a[:, 0]
        for i in range(1, self.m):
            window = window + a[:, i]
        averages = [window / self.m]
        for i in range(self.m, width):  # the running sum of the official moving average
            window = window + (a[:, i] - a[:, i - self.m])
            averages.append(window / self.m)
        total = averages[-self.k].abs()
        for avg in averages[len(averages) - self.k + 1 :]:
            total = total + avg.abs()
        self.judgement = torch.where(self.num_diffs >= width, total, torch.full_like(total, math.inf))


class IESPolicy(FixedPolicy):
    """IES's schedule [code]: a constant threshold (default ``1e-3``) every epoch; the prune ratio is ignored
    (0). The histories need 3 losses and ``m + k`` differences, so with ``m = 3, k = 1`` the first exclusion
    can come at epoch 6 (0-based)."""

    name = "ies"
    pruner = "ies"
    defaults = {"threshold": 1e-3}
    main_knob = "threshold"  # what sets its compute (a larger threshold excludes more samples)
    sampler_unfit = "scores its excluded samples after every epoch (score_after passes)"

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": 0.0, "threshold": self.hparams["threshold"]}
