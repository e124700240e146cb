"""What one epoch trains on (:class:`EpochPlan`) and what it returns (:class:`EpochResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

__all__ = ["EpochPlan", "EpochResult", "MixupSpec", "PassCounts", "Selector", "selector_flops"]


@runtime_checkable
class Selector(Protocol):
    """An in-batch selector: called inside the training step with the shallow features of the whole batch
    ``[B, ...]`` and the batch's dataset indices ``[B]``; returns the row positions ``[K_b]`` (int64,
    ``K_b <= B``, a tensor whose length is known without a host sync, e.g. from ``topk``) that continue into
    the deep part and the loss.

    A selector may also define ``flops(rows_in: int, rows_kept: int, feature_shape: tuple) -> float``: the
    FLOPs of its own arithmetic on that batch, from host-side ints only (no sync), counted with
    ``FlopCounterMode``'s convention (matrix products, 2 FLOPs per multiply-add). The engine charges them
    to :attr:`PassCounts.selector_flops`; a plain callable without ``flops`` costs 0 (see
    :func:`selector_flops`).
    """

    def __call__(self, features: torch.Tensor, batch_indices: torch.Tensor) -> torch.Tensor: ...


def selector_flops(selector: Selector, rows_in: int, rows_kept: int, feature_shape: tuple[int, ...]) -> float:
    """``selector.flops(rows_in, rows_kept, feature_shape)`` if the selector defines it, else 0."""
    flops = getattr(selector, "flops", None)
    return float(flops(rows_in, rows_kept, tuple(feature_shape))) if flops is not None else 0.0


@dataclass
class MixupSpec:
    """Mix-up partners aligned with :attr:`EpochPlan.indices`.

    ``partner`` ``[K]`` int64 dataset index of each row's partner (the row's own index for unmixed rows);
    ``lam`` ``[K]`` float in [0, 1], the row's own share: input ``lam * x_i + (1 - lam) * x_partner`` and loss
    ``lam * CE(y_i) + (1 - lam) * CE(y_partner)``. Rows with ``lam == 1`` are plain rows.
    """

    partner: torch.Tensor
    lam: torch.Tensor


@dataclass
class EpochPlan:
    """The ordered training-set indices ``[K]`` of one epoch and a loss weight ``[K]`` for each.

    ``selector``: optional in-batch selector (see :class:`Selector`). ``mixup``: optional mix-up partners.
    ``claimed_prune_ratio``: the ratio the method claims for this epoch (reported beside the realised one; 0
    for an epoch that prunes nothing). ``score_after``: optional indices ``[S]`` int64 to score after the
    epoch's training (eval mode, no grad, batched by ``eval_batch_size``, the training criterion with its label
    smoothing, un-augmented inputs); their losses come back in :attr:`EpochResult.scored_losses` and their
    forward passes are charged to the same epoch as ``scoring_forward``.
    """

    indices: torch.Tensor
    weights: torch.Tensor | None = None
    selector: Selector | None = None
    mixup: MixupSpec | None = None
    claimed_prune_ratio: float = 0.0
    score_after: torch.Tensor | None = None

    def validate(self, num_samples: int) -> None:
        idx = self.indices
        if idx.ndim != 1 or idx.dtype != torch.int64:
            raise ValueError(f"plan indices must be a 1-D int64 tensor, got shape {tuple(idx.shape)} {idx.dtype}")
        if self.weights is not None and self.weights.shape != idx.shape:
            raise ValueError(f"plan weights shape {tuple(self.weights.shape)} != indices shape {tuple(idx.shape)}")
        if self.mixup is not None and (self.mixup.partner.shape != idx.shape or self.mixup.lam.shape != idx.shape):
            raise ValueError("mixup partner and lam must have the same shape as the plan indices")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_samples):
            raise ValueError(f"plan indices must lie in [0, {num_samples}); got [{int(idx.min())}, {int(idx.max())}]")
        sa = self.score_after
        if sa is not None:
            if sa.ndim != 1 or sa.dtype != torch.int64:
                raise ValueError(f"plan score_after must be a 1-D int64 tensor, got shape {tuple(sa.shape)} {sa.dtype}")
            if sa.numel() and (int(sa.min()) < 0 or int(sa.max()) >= num_samples):
                raise ValueError(
                    f"plan score_after must lie in [0, {num_samples}); got [{int(sa.min())}, {int(sa.max())}]"
                )


@dataclass
class PassCounts:
    """Sample passes of one epoch (a sample through a part, once), and ``selector_flops``: the FLOPs (not a
    pass count) of an in-batch selector's own arithmetic (see :class:`Selector`)."""

    shallow_forward: int = 0
    deep_forward: int = 0
    shallow_backward: int = 0
    deep_backward: int = 0
    scoring_forward: int = 0
    selector_flops: float = 0.0

    def __iadd__(self, other: PassCounts) -> PassCounts:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self


@dataclass
class EpochResult:
    """One epoch's outcome.

    ``indices`` ``[M]`` int64: the samples that reached the loss, in training order (M <= len(plan)).
    ``losses`` ``[M]``: their unweighted per-sample losses (mix-up rows: the mixed loss); ``correct`` ``[M]``
    bool; ``mixed`` ``[M]`` bool. All on the training device. ``flops``: the epoch's training FLOPs
    (passes x measured FLOPs per sample, plus scoring passes); ``flops_fraction``: of one full-data epoch.
    ``kept_fraction``: M / N. ``wall_time``: seconds (synchronised on CUDA), kept apart from the FLOPs.
    ``scored_indices`` ``[S]`` and ``scored_losses`` ``[S]``: the plan's ``score_after`` samples and their
    losses after the epoch's training (on the device; ``None`` without ``score_after``).
    """

    epoch: int
    indices: torch.Tensor
    losses: torch.Tensor
    correct: torch.Tensor
    mixed: torch.Tensor
    passes: PassCounts
    flops: float
    flops_fraction: float
    kept_fraction: float
    planned_fraction: float
    claimed_prune_ratio: float
    train_loss: float
    train_accuracy: float
    lr: float
    wall_time: float
    scored_indices: torch.Tensor | None = None
    scored_losses: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
