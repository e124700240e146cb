"""One training epoch's semantics, written once for both engines.

:class:`~prunegym.training.TrainingRun` (one model) and :class:`~prunegym.training.BatchedTrainingRun` (K models
stacked) differ only in how they gather a batch's rows and step their optimizers; what an epoch *means* is
here, and both call it:

* the learning rate of batch ``b`` of ``n`` in epoch ``e``: the schedule at progress ``(e + b / n) / E``
  (:func:`run_lr`), and after the epoch at ``(e + 1) / E``;
* mix-up: inputs ``lam x + (1 - lam) x_partner`` and losses ``lam l(y) + (1 - lam) l(y_partner)``
  (:func:`mix_inputs`, :func:`sample_losses`);
* the loss a batch backpropagates: ``sum_i w_i l_i / m`` over the ``m`` rows that reach it, per run
  (:func:`batch_loss`);
* the epoch's close: its mean loss and accuracy in one host sync (:func:`epoch_means`), the score-table update
  (mix-up rows do not count as the sample's own loss; :func:`update_scores`), with each sample's batch loss
  (the mean loss of the batch it was trained in, for the batch loss score; :func:`batch_means`), and the
  meter's charge and the :class:`EpochResult` (:func:`close_epoch`).

Each function takes the rows of one run (``[B]``) or of K runs (``[K, B]``) and does the same arithmetic in the
same order either way, so the single run's results are bit for bit those it always had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import RunConfig
from .learning_rate import lr_at
from .meter import ComputeMeter
from .plan import EpochPlan, EpochResult, PassCounts
from .scores import ScoreTable

__all__ = [
    "batch_loss",
    "batch_means",
    "close_epoch",
    "epoch_means",
    "mix_inputs",
    "run_lr",
    "sample_losses",
    "update_scores",
]


def run_lr(config: RunConfig, epoch: int, batch: int = 0, n_batches: int = 1) -> float:
    """The learning rate of batch ``batch`` of ``n_batches`` in epoch ``epoch`` (epochs completed before it):
    ``config``'s schedule at training progress ``(epoch + batch / n_batches) / epochs`` in [0, 1]; with the
    defaults, the rate at the start of epoch ``epoch`` (after ``epoch`` epochs)."""
    return lr_at(config.lr_schedule, (epoch + batch / n_batches) / config.epochs, config.lr, pct_start=config.pct_start)


def mix_inputs(x: torch.Tensor, x_partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix-up inputs ``lam x + (1 - lam) x_partner``: ``lam`` ``[B]`` or ``[K, B]`` in [0, 1], ``x`` and
    ``x_partner`` ``[B, ...]`` or ``[K, B, ...]``."""
    shape = (*lam.shape, *([1] * (x.ndim - lam.ndim)))
    return lam.view(shape) * x + (1 - lam).view(shape) * x_partner


def sample_losses(
    logits: torch.Tensor,
    y: torch.Tensor,
    label_smoothing: float,
    y_partner: torch.Tensor | None = None,
    lam: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample cross-entropy, the shape of ``y`` (``[B]`` or ``[K, B]``; ``logits`` ``[..., C]``); with
    mix-up partners' labels ``y_partner`` and coefficients ``lam``, ``lam l(y) + (1 - lam) l(y_partner)``."""

    per_sample = _cross_entropy(logits, y, label_smoothing)
    if y_partner is not None and lam is not None:
        per_sample = lam * per_sample + (1 - lam) * _cross_entropy(logits, y_partner, label_smoothing)
    return per_sample


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Per-sample cross-entropy in the shape of ``labels`` (one run's ``[B, C]`` logits as they are: the hot
    path of every batch; K runs' ``[K, B, C]`` flattened to ``[K B, C]`` and back)."""
    if logits.ndim == 2:
        return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    flat = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none", label_smoothing=label_smoothing)
    return flat.view(labels.shape)


def batch_loss(per_sample: torch.Tensor, weights: torch.Tensor | None, denom: int | torch.Tensor) -> torch.Tensor:
    """The scalar a batch backpropagates: ``sum_i w_i l_i / denom`` (``denom``: the rows that reach the loss,
    an int, or ``[K]`` per run for ``[K, B]`` losses, whose runs' terms are summed: each run's gradient is its
    own). ``weights`` ``None``: all 1."""
    weighted = per_sample * weights if weights is not None else per_sample
    if per_sample.ndim == 1:
        return weighted.sum() / denom
    return (weighted.sum(-1) / denom).sum()


def epoch_means(losses: Sequence[torch.Tensor], correct: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
    """``(mean loss, accuracy in [0, 1])`` of each run's trained rows, in one host sync; ``(nan, nan)`` for a
    run that trained nothing."""
    nonempty = [i for i, lo in enumerate(losses) if lo.numel()]
    pairs = [torch.stack([losses[i].mean(), correct[i].float().mean()]) for i in nonempty]
    values = iter(torch.stack(pairs).tolist() if pairs else [])
    nan = float("nan")
    return [tuple(next(values)) if lo.numel() else (nan, nan) for lo in losses]


def batch_means(
    plans: Sequence[EpochPlan],
    indices: Sequence[torch.Tensor],
    losses: Sequence[torch.Tensor],
    batch_size: int,
    num_train: int,
) -> torch.Tensor:
    """The batch loss of every trained row of K runs, concatenated in run order (``[sum_k M_k]``, loss units):
    the unweighted mean of ``losses[k]`` over the rows of run ``k`` trained in the same batch, a batch being
    ``batch_size`` consecutive rows of ``plans[k].indices`` (rows ``[b B, (b + 1) B)``, as both engines step).

    ``indices[k]`` ``[M_k]`` (each sample at most once, in any order: a selector's dropped rows are left out of
    their batch's mean, and rows all-gathered from several processes fall in the global batch they were planned
    in); ``losses[k]`` ``[M_k]`` their per-sample losses (a mix-up row's mixed loss counts: it is part of the
    loss the batch reports). No host sync; the sums are plain reductions (no atomics), so the result is
    deterministic and the same for a run alone (K = 1) and among K."""
    dev = losses[0].device
    slots, offset = [], 0
    for plan, idx in zip(plans, indices):
        planned = plan.indices.to(dev, torch.int64)
        position = torch.empty(num_train, dtype=torch.int64, device=dev)
        position[planned] = torch.arange(planned.numel(), device=dev)
        slots.append(position[idx.to(dev, torch.int64)] + offset)
        offset += math.ceil(planned.numel() / batch_size) * batch_size  # whole batches of this run's plan
    slot = torch.cat(slots)
    loss = torch.cat([lo.reshape(-1) for lo in losses])
    total = torch.zeros(offset, dtype=loss.dtype, device=dev).index_put_((slot,), loss)
    count = torch.zeros(offset, dtype=loss.dtype, device=dev).index_put_((slot,), torch.ones_like(loss))
    means = total.view(-1, batch_size).sum(1) / count.view(-1, batch_size).sum(1).clamp_min(1)
    return means[slot // batch_size]


def update_scores(
    table: ScoreTable,
    num_train: int,
    epochs: Sequence[int],
    indices: Sequence[torch.Tensor],
    losses: Sequence[torch.Tensor],
    correct: Sequence[torch.Tensor],
    mixed: Sequence[torch.Tensor] | None,
    *,
    plans: Sequence[EpochPlan] | None = None,
    batch_size: int | None = None,
) -> None:
    """Record K runs' epochs in ``table`` (``K * num_train`` samples, run ``k`` at rows ``[k N, (k + 1) N)``;
    ``K = 1``: a run's own table) in one update: run ``k`` trained ``indices[k]`` in its epoch ``epochs[k]`` with
    ``losses[k]`` and ``correct[k]``; ``mixed[k]`` marks mix-up rows, whose loss is not the sample's own
    (``None``: the epoch mixed nothing). With ``plans`` (run ``k`` trained ``plans[k]``) and ``batch_size`` (rows
    per step), each sample's batch loss (:func:`batch_means`) also enters ``table.batch_score`` (the batch loss
    score, :meth:`ScoreTable.update_batch_scores`); without them the batch scores stay as they are."""
    runs = [k for k, i in enumerate(indices) if i.numel()]
    if not runs:
        return
    rows = indices[0] if len(indices) == 1 else torch.cat([indices[k] + k * num_train for k in runs])
    same = len({epochs[k] for k in runs}) == 1
    epoch: int | torch.Tensor = epochs[runs[0]]
    if not same:
        dev = rows.device
        epoch = torch.cat([torch.full((indices[k].numel(),), epochs[k], dtype=torch.int64, device=dev) for k in runs])

    def cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat([parts[k] for k in runs])

    valid = ~cat(mixed) if mixed is not None else None
    table.update(rows, cat(losses), cat(correct), epoch, valid=valid)
    if plans is not None and batch_size is not None:
        done = [plans[k] for k in runs], [indices[k] for k in runs], [losses[k] for k in runs]
        table.update_batch_scores(rows, batch_means(*done, batch_size, num_train))


def close_epoch(
    meter: ComputeMeter,
    plan: EpochPlan,
    passes: PassCounts,
    *,
    epoch: int,
    num_train: int,
    indices: torch.Tensor,
    losses: torch.Tensor,
    correct: torch.Tensor,
    mixed: torch.Tensor,
    means: tuple[float, float],
    lr: float,
    wall_time: float,
    scored: tuple[torch.Tensor, torch.Tensor] | None = None,
    extra: dict | None = None,
) -> EpochResult:
    """Charge ``passes`` to ``meter`` and return the epoch's :class:`EpochResult` (``indices`` ``[M]`` the rows
    that reached the loss, of ``num_train``; ``means``: :func:`epoch_means`' pair; ``lr``: the rate after the
    epoch; ``scored``: the plan's ``score_after`` samples and their losses)."""
    flops = meter.charge(passes)
    m = int(indices.numel())
    return EpochResult(
        epoch=epoch,
        indices=indices,
        losses=losses,
        correct=correct,
        mixed=mixed,
        passes=passes,
        flops=flops,
        flops_fraction=flops / meter.full_epoch_flops,
        kept_fraction=m / num_train,
        planned_fraction=int(plan.indices.numel()) / num_train,
        claimed_prune_ratio=float(plan.claimed_prune_ratio),
        train_loss=means[0],
        train_accuracy=means[1],
        lr=lr,
        wall_time=wall_time,
        scored_indices=scored[0] if scored is not None else None,
        scored_losses=scored[1] if scored is not None else None,
        extra=dict(extra or {}),
    )
