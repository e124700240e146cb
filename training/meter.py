"""The compute meter: FLOPs of an epoch from its sample passes, as fractions of the full-data epoch and run."""

from __future__ import annotations

from .flops import PassFlops
from .plan import PassCounts

__all__ = ["ComputeMeter"]


class ComputeMeter:
    """Converts :class:`PassCounts` to FLOPs with measured :class:`PassFlops` and accumulates a run's total.

    ``full_epoch_flops``: one epoch over all ``num_samples`` (forward and backward through both parts).
    ``full_run_flops``: ``epochs`` such epochs; fractions of it are what rewards and reports use.
    An epoch's FLOPs are its sample passes times the measured FLOPs per sample, plus the scoring forward
    passes a pruner asked for, plus the FLOPs of an in-batch selector's own arithmetic
    (``PassCounts.selector_flops``, counted by the selector from its shapes). Validation and test
    evaluation are not training compute: every policy pays them alike.
    """

    def __init__(self, flops: PassFlops, num_samples: int, epochs: int):
        self.flops = flops
        self.num_samples = int(num_samples)
        self.epochs = int(epochs)
        self.full_epoch_flops = float(num_samples) * flops.train_step
        self.full_run_flops = self.full_epoch_flops * epochs
        self.total_flops = 0.0
        self.total_passes = PassCounts()

    def flops_by_category(self, passes: PassCounts) -> dict[str, float]:
        """FLOPs of ``passes`` per category: the four model passes, ``scoring_forward`` and ``selector``."""
        f = self.flops
        return {
            "shallow_forward": passes.shallow_forward * f.shallow_forward,
            "deep_forward": passes.deep_forward * f.deep_forward,
            "shallow_backward": passes.shallow_backward * f.shallow_backward,
            "deep_backward": passes.deep_backward * f.deep_backward,
            "scoring_forward": passes.scoring_forward * f.forward,
            "selector": float(passes.selector_flops),
        }

    def flops_of(self, passes: PassCounts) -> float:
        return sum(self.flops_by_category(passes).values())

    @property
    def total_by_category(self) -> dict[str, float]:
        """The run's FLOPs so far per category (see :meth:`flops_by_category`)."""
        return self.flops_by_category(self.total_passes)

    def charge(self, passes: PassCounts) -> float:
        """Add ``passes`` to the run's total; returns their FLOPs."""
        flops = self.flops_of(passes)
        self.total_flops += flops
        self.total_passes += passes
        return flops

    @property
    def total_fraction(self) -> float:
        """FLOPs so far as a fraction of the full-data run (1.0 = the whole unpruned run)."""
        return self.total_flops / self.full_run_flops
