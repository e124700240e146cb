"""Drive any ``torch.optim.lr_scheduler`` by training progress, so that pruned (shorter) epochs do not break
a schedule sized for full epochs.

A scheduler built for a full-data run takes ``steps_per_epoch`` steps per epoch (the full epoch's batch
count for a per-batch schedule such as ``OneCycleLR(total_steps=E * B)``; 1 for a per-epoch one such as
``StepLR``). When an epoch is pruned to ``b < B`` batches, stepping once per batch would fall behind: after
the run the schedule would be a fraction of the way through (the pitfall that cost the official InfoBatch
recipe 2 points in our run). :class:`ProgressLR` steps the scheduler to ``floor(progress * steps_per_epoch)``
steps, with progress = epochs completed + the fraction of the current epoch's batches done: a pruned epoch
covers the same stretch of the schedule as a full one (several scheduler steps per batch when needed).
This is the rule the engine applies to its own schedules (:mod:`prunegym.training.schedule`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressLR", "progress_lr"]


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
