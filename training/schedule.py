"""Learning-rate schedules as functions of training progress in [0, 1].

Progress is ``(epoch + fraction of this epoch's batches done) / epochs``: a pruned epoch with fewer batches
covers the same stretch of the schedule as a full one, so pruning never shifts the schedule.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_at"]

SCHEDULES = ("onecycle", "cosine", "constant")


def lr_at(
    schedule: str,
    progress: float,
    peak_lr: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Learning rate at ``progress`` in [0, 1].

    ``onecycle``: cosine warm-up from ``peak/div_factor`` to ``peak`` over ``pct_start``, then cosine
    annealing to ``peak/(div_factor*final_div_factor)`` (``torch.optim.lr_scheduler.OneCycleLR``'s shape).
    ``cosine``: ``peak * (1 + cos(pi * progress)) / 2``. ``constant``: ``peak``.
    """
    p = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return peak_lr
    if schedule == "cosine":
        return peak_lr * 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "onecycle":
        start, end = peak_lr / div_factor, peak_lr / (div_factor * final_div_factor)
        if p < pct_start:
            t = p / pct_start
            return start + (peak_lr - start) * 0.5 * (1 - math.cos(math.pi * t))
        t = (p - pct_start) / (1 - pct_start)
        return end + (peak_lr - end) * 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown lr schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
