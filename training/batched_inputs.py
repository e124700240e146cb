"""The padded ``[K, L]`` inputs of one batched epoch: every run's plan stacked to the longest one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .plan import EpochPlan

__all__ = ["StackedPlans", "stack_plans"]


@dataclass
class StackedPlans:
    """K plans padded to ``L = max(counts)`` rows: ``indices`` ``[K, L]`` (training-set indices, padded with 0),
    ``weights`` ``[K, L]`` or None (1 for unweighted plans, 0 for padding), ``partner`` ``[K, L]`` pool positions
    of the mixup partners or None, ``lam`` ``[K, L]`` mixup coefficients in [0, 1] or None (1: no mixing)."""

    indices: torch.Tensor
    weights: torch.Tensor | None
    partner: torch.Tensor | None
    lam: torch.Tensor | None


def _pad(rows: list[torch.Tensor], width: int, value: float = 0.0) -> torch.Tensor:
    return torch.stack([F.pad(r, (0, width - r.numel()), value=value) for r in rows])


def stack_plans(
    plans: list[EpochPlan], counts: list[int], train_positions: torch.Tensor, padded: bool, device: torch.device
) -> StackedPlans:
    """Stack ``plans`` (``counts[k]`` rows each) on ``device``; ``train_positions`` ``[K, N]`` maps each run's
    training indices to pool positions (for the mixup partners); ``padded``: some step has padding rows, so
    ``weights`` is built even when no plan is weighted."""
    width = max(counts)
    indices = _pad([p.indices.to(device) for p in plans], width)
    weights = None
    if padded or any(p.weights is not None for p in plans):
        weights = _pad(
            [
                p.weights.to(device, torch.float32) if p.weights is not None else torch.ones(c, device=device)
                for p, c in zip(plans, counts)
            ],
            width,
        )
    partner = lam = None
    if any(p.mixup is not None for p in plans):
        partner = train_positions.gather(
            1,
            _pad(
                [
                    p.mixup.partner.to(device, torch.int64) if p.mixup is not None else p.indices.to(device)
                    for p in plans
                ],
                width,
            ),
        )
        lam = _pad(
            [
                p.mixup.lam.to(device, torch.float32) if p.mixup is not None else torch.ones(c, device=device)
                for p, c in zip(plans, counts)
            ],
            width,
            value=1.0,
        )
    return StackedPlans(indices, weights, partner, lam)
