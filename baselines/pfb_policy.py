"""PFB's schedule (Wu et al., ICCV 2025) [code]: full data outside a window of pruned epochs, prune ratio
``p`` inside it.

Window (0-based epochs): ``start <= e < end`` with ``start = max(1, round(start_fraction * E))`` and
``end = round(end_fraction * E)`` (half up); the defaults 16/300 and 260/300 give exactly the authors'
Swin-T example (full for epochs 0-15 and 260-299 of 300: the first ~5% and last ~13%); for ``E = 10``: full
for epoch 0 and epoch 9. Epoch 0 is never pruned, whatever the run length (``start >= 1``; the pruner
enforces it too): its full-data epochs warm the density estimator up. Default ``p = 0.4``, the ratio of the
paper's headline ImageNet ResNet-50 result (40% pruned, 76.4 -> 76.9) [paper, 2nd].
"""
from __future__ import annotations

import math

from .policy import FixedPolicy

__all__ = ["PFBPolicy", "pfb_window"]


def pfb_window(start_fraction: float, end_fraction: float, epochs: int) -> tuple[int, int]:
    """``(start, end)``: epochs ``start <= e < end`` are pruned; rounding half up, ``start >= 1`` (epoch 0 is
    never pruned) and ``end >= start``."""
    start = max(1, math.floor(start_fraction * epochs + 0.5))
    return start, max(start, math.floor(end_fraction * epochs + 0.5))


class PFBPolicy(FixedPolicy):
    name = "pfb"
    pruner = "pfb"
    defaults = {"prune_ratio": 0.4, "start_fraction": 16 / 300, "end_fraction": 260 / 300}

    def validate(self) -> None:
        super().validate()
        s, e = self.hparams["start_fraction"], self.hparams["end_fraction"]
        if not 0.0 <= s <= e <= 1.0:
            raise ValueError(f"start_fraction={s!r}, end_fraction={e!r}: need 0 <= start_fraction <= end_fraction <= 1")

    def schedule(self, epoch: int) -> dict[str, float]:
        start, end = pfb_window(self.hparams["start_fraction"], self.hparams["end_fraction"], self.epochs)
        return {"prune_ratio": self.hparams["prune_ratio"] if start <= epoch < end else 0.0}
