"""What ``render()`` shows of one episode, for ``PruningEnv`` and each sub-env of ``PruningVectorEnv``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RENDER_MODES", "render_episode"]

RENDER_MODES = ("ansi", "rgb_array")


def _ansi(info: dict[str, Any], epochs: int) -> str:
    i = info
    return (
        f"epoch {i.get('epoch', 0)}/{epochs} prune_ratio {i.get('prune_ratio', 0):.2f} "
        f"kept {i.get('kept_fraction', 1):.2f} compute {i.get('compute_fraction_total', 0):.3f} "
        f"val_acc {i.get('val_accuracy', 0):.4f}"
    )


def _rgb(val_accuracies: Sequence[float], kept_fractions: Sequence[float], n_steps: int) -> np.ndarray:
    h, w = 64, 128
    half = h // 2
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    for t, (acc, kept) in enumerate(zip(val_accuracies, kept_fractions)):
        x0 = t * w // n_steps
        x1 = max(x0 + 1, (t + 1) * w // n_steps)
        acc_px = round(min(max(acc if math.isfinite(acc) else 0.0, 0.0), 1.0) * half)
        kept_px = round(min(max(kept, 0.0), 1.0) * half)
        img[half - acc_px : half, x0:x1] = (40, 160, 40)
        img[h - kept_px : h, x0:x1] = (40, 80, 200)
    return img


def render_episode(
    mode: str | None, last_info: dict[str, Any], episode: Any, epochs: int, decision_interval: int
) -> str | np.ndarray | None:
    """``"ansi"``: one line of text from the last ``info``; ``"rgb_array"``: a ``[64, 128, 3]`` uint8 chart
    with one column per step, validation accuracy (green, top half) and kept fraction (blue, bottom half) of
    ``episode`` (an ``EpisodeState``, or ``None`` before the first reset); ``None``: nothing."""
    if mode == "rgb_array":
        acc, kept = (episode.val_accuracies, episode.kept_fractions) if episode is not None else ((), ())
        return _rgb(acc, kept, math.ceil(epochs / decision_interval))
    if mode != "ansi":
        return None
    return _ansi(last_info, epochs)
