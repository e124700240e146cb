"""What one epoch trains on (:class:`EpochPlan`) and what it returns (:class:`EpochResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

__all__ = ["EpochPlan", "EpochResult", "MixupSpec", "PassCounts", "Selector"]

# Called inside the training step with the shallow features of the whole batch ``[B, ...]`` and the batch's
# dataset indices ``[B]``; returns the row positions ``[K_b]`` (int64, K_b <= B, a tensor whose length is
# known without a host sync, e.g. from ``topk``) that continue into the deep part and the loss.
Selector = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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

    ``selector``: optional in-batch selector (see :data:`Selector`). ``mixup``: optional mix-up partners.
    ``claimed_prune_ratio``: the ratio the method claims for this epoch (reported beside the realised one).
    """

    indices: torch.Tensor
    weights: torch.Tensor | None = None
    selector: Optional[Selector] = None
    mixup: Optional[MixupSpec] = None
    claimed_prune_ratio: float = 0.0

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


@dataclass
class PassCounts:
    """Sample passes of one epoch (a sample through a part, once)."""

    shallow_forward: int = 0
    deep_forward: int = 0
    shallow_backward: int = 0
    deep_backward: int = 0
    scoring_forward: int = 0

    def __iadd__(self, other: "PassCounts") -> "PassCounts":
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
    extra: dict = field(default_factory=dict)
