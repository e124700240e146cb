"""The learning rate by training progress: the engine's schedules (:func:`lr_at`) and any
``torch.optim.lr_scheduler`` driven the same way (:func:`progress_lr`).

Progress is ``(epoch + fraction of this epoch's batches done) / epochs``: a pruned epoch with fewer batches
covers the same stretch of the schedule as a full one, so pruning never shifts the schedule.

Drive any ``torch.optim.lr_scheduler`` by training progress, so that pruned (shorter) epochs do not break
a schedule sized for full epochs.

A scheduler built for a full-data run takes ``steps_per_epoch`` steps per epoch (the full epoch's batch
count for a per-batch schedule such as ``OneCycleLR(total_steps=E * B)``; 1 for a per-epoch one such as
``StepLR``). When an epoch is pruned to ``b < B`` batches, stepping once per batch would fall behind: after
the run the schedule would be a fraction of the way through (the pitfall that cost the official InfoBatch
recipe 2 points in our run). :class:`ProgressLR` steps the scheduler to ``floor(progress * steps_per_epoch)``
steps, with progress = epochs completed + the fraction of the current epoch's batches done: a pruned epoch
covers the same stretch of the schedule as a full one (several scheduler steps per batch when needed).
This is the rule the engine applies to its own schedules (:func:`lr_at`).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SCHEDULES", "ProgressLR", "lr_at", "progress_lr"]

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


class ProgressLR:
    """Wraps ``scheduler`` (any ``torch.optim.lr_scheduler`` stepped without arguments) whose full-data run
    takes ``steps_per_epoch`` steps per epoch.

    Call :meth:`step` after each optimizer step with the epoch (0-based), the batches done in it and the
    number of batches it has (``len(loader)``); or :meth:`step_to` with progress in epochs. The scheduler
    only ever moves forward; ``steps`` is how many steps it has taken.
    """

    def __init__(self, scheduler: Any, steps_per_epoch: int):
        if not callable(getattr(scheduler, "step", None)):
            raise ValueError(f"scheduler {scheduler!r} has no step(); pass a torch.optim.lr_scheduler")
        if type(scheduler).__name__ == "ReduceLROnPlateau":
            raise ValueError("ReduceLROnPlateau follows a metric, not training progress; step it yourself")
        if not isinstance(steps_per_epoch, int) or isinstance(steps_per_epoch, bool) or steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch={steps_per_epoch!r} must be a positive int (the full epoch's "
                "batch count for a per-batch schedule, 1 for a per-epoch one)"
            )
        self.scheduler = scheduler
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0

    def _advance(self, target: int) -> None:
        while self.steps < target:
            self.scheduler.step()
            self.steps += 1

    def step(self, epoch: int, batches_done: int, batches: int) -> None:
        """Move to progress ``epoch + batches_done / batches`` (``batches``: this epoch's batch count, which
        pruning makes smaller than a full epoch's)."""
        if batches < 1 or not 0 <= batches_done <= batches or epoch < 0:
            raise ValueError(
                f"step(epoch={epoch!r}, batches_done={batches_done!r}, batches={batches!r}): need "
                "epoch >= 0 and 0 <= batches_done <= batches, batches >= 1"
            )
        self._advance(epoch * self.steps_per_epoch + (batches_done * self.steps_per_epoch) // batches)

    def step_to(self, progress: float) -> None:
        """Move to ``progress`` epochs (e.g. 2.5: half-way through the third epoch)."""
        if not progress >= 0:
            raise ValueError(f"progress={progress!r} must be a number of epochs >= 0")
        self._advance(int(progress * self.steps_per_epoch + 1e-9))

    def get_last_lr(self) -> list[float]:
        return self.scheduler.get_last_lr()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "steps": self.steps, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = int(state["steps"])


def progress_lr(scheduler: Any, steps_per_epoch: int) -> ProgressLR:
    """:class:`ProgressLR` of ``scheduler``: ``sched = progress_lr(OneCycleLR(opt, 0.1, total_steps=E * B), B)``,
    then ``sched.step(epoch, i + 1, len(loader))`` after each optimizer step."""
    return ProgressLR(scheduler, steps_per_epoch)
