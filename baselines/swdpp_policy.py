"""SwDPP's schedule (Huang et al., IEEE SPL 2024) [recon, see :mod:`prunegym.baselines.swdpp`]: a constant
prune ratio ``r = 0.3`` (the abstract's "70% of the data per epoch"), uniform floor ``lam = 0.2`` and Mixup
probability ``m = r`` unless ``mix_prob`` is given; the pruner's one warm-up epoch is full data."""
from __future__ import annotations

from .policy import FixedPolicy

__all__ = ["SwDPPPolicy"]


class SwDPPPolicy(FixedPolicy):
    name = "swdpp"
    pruner = "swdpp"
    defaults = {"prune_ratio": 0.3, "floor": 0.2, "mix_prob": None}

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.hparams["floor"] <= 1.0:
            raise ValueError(f"floor={self.hparams['floor']!r} must be in [0, 1]")
        m = self.hparams["mix_prob"]
        if m is not None and not 0.0 <= m <= 1.0:
            raise ValueError(f"mix_prob={m!r} must be in [0, 1] (or None: equal to prune_ratio)")

    def schedule(self, epoch: int) -> dict[str, float]:
        r = self.hparams["prune_ratio"]
        m = self.hparams["mix_prob"]
        return {"prune_ratio": r, "floor": self.hparams["floor"], "mix_prob": r if m is None else m}
