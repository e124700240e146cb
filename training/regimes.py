"""Data regimes: noisy training labels and long-tailed (imbalanced) training sets, for any dataset.

A regime is four :class:`~prunegym.training.RunConfig` fields, applied to the seed's training split (and, for
noise, its validation split) after the split is drawn, each random choice from its own stream of the run seed
(never a global RNG), so the same seed gives the same regime and other seeds other ones:

* ``imbalance`` >= 1: a long-tailed training set, the CIFAR-10-LT protocol (Cao et al., NeurIPS 2019): class
  ``c`` of ``K`` keeps ``floor(n_max * imbalance ** (-c / (K - 1)))`` of its training samples (``n_max``: the
  largest class count of the split; a class with fewer keeps all it has), a uniform subset drawn from the
  ``imbalance`` stream, in the split's order. Validation and test sets stay balanced (as they were), so that the
  reward measures what the test measures. 1 (the default) keeps everything.
* ``label_noise`` in [0, 1): exactly ``round(label_noise * N)`` of the ``N`` training labels are corrupted, a
  uniform subset from the ``label-noise`` stream; ``label_noise_kind`` ``"symmetric"`` gives each a uniformly
  drawn *other* class, ``"pairflip"`` class ``c -> (c + 1) mod K`` (Co-teaching, Han et al., NeurIPS 2018).
* ``clean_val``: the validation labels carry the same noise (its own draw, ``label-noise-val`` stream) unless
  ``True`` (the oracle setting: a user has no clean labels). Test labels are never corrupted.

:func:`apply_regime` returns the new training indices and labels with the record of what it did
(:class:`RegimeMarks`): which training samples are noisy and their true labels, for the env's diagnostics.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from .seeding import torch_generator

__all__ = ["NOISE_KINDS", "RegimeMarks", "apply_regime", "check_regime", "corrupt_labels", "long_tail_subset"]

NOISE_KINDS = ("symmetric", "pairflip")


def check_regime(label_noise: Any, label_noise_kind: Any, clean_val: Any, imbalance: Any) -> None:
    """One-line ``ValueError`` naming a bad regime field and what is allowed."""
    real = isinstance(label_noise, numbers.Real) and not isinstance(label_noise, bool)
    if not (real and math.isfinite(label_noise) and 0.0 <= label_noise < 1.0):
        raise ValueError(f"label_noise={label_noise!r} must be a fraction in [0, 1) of the training labels")
    if label_noise_kind not in NOISE_KINDS:
        raise ValueError(f"label_noise_kind={label_noise_kind!r} is not allowed; allowed: {', '.join(NOISE_KINDS)}")
    if clean_val not in (True, False):
        raise ValueError(f"clean_val={clean_val!r} must be True or False")
    real = isinstance(imbalance, numbers.Real) and not isinstance(imbalance, bool)
    if not (real and math.isfinite(imbalance) and imbalance >= 1.0):
        raise ValueError(f"imbalance={imbalance!r} must be a number >= 1 (1: balanced)")


def long_tail_subset(y: torch.Tensor, num_classes: int, imbalance: float, generator: torch.Generator) -> torch.Tensor:
    """Positions ``[M]`` (ascending, int64) of ``y`` ``[N]`` that a long-tailed subset keeps: class ``c`` keeps
    ``floor(n_max * imbalance ** (-c / (K - 1)))`` of its samples, a uniform draw from ``generator``."""
    counts = torch.bincount(y, minlength=num_classes)
    n_max = int(counts.max())
    keep = []
    for c in range(num_classes):
        members = torch.nonzero(y == c).view(-1)
        want = math.floor(n_max * float(imbalance) ** (-c / max(1, num_classes - 1)))
        k = min(int(members.numel()), want)
        order = torch.randperm(int(members.numel()), generator=generator)
        keep.append(members[order[:k]])
    return torch.sort(torch.cat(keep)).values


def corrupt_labels(
    y: torch.Tensor, num_classes: int, fraction: float, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_noisy, noisy)``: ``y`` ``[N]`` with exactly ``round(fraction * N)`` labels corrupted (``kind``:
    ``"symmetric"``, a uniformly drawn other class; ``"pairflip"``, ``c + 1 mod K``) and the bool mask ``[N]`` of
    the corrupted ones, both drawn from ``generator``."""
    n = int(y.numel())
    flip = torch.randperm(n, generator=generator)[: round(float(fraction) * n)]
    noisy = torch.zeros(n, dtype=torch.bool)
    noisy[flip] = True
    out = y.clone()
    if kind == "pairflip":
        out[flip] = (y[flip] + 1) % num_classes
    else:  # a uniform other class: shift by 1..K-1
        shift = torch.randint(1, num_classes, (int(flip.numel()),), generator=generator)
        out[flip] = (y[flip] + shift) % num_classes
    return out, noisy


@dataclass(frozen=True)
class RegimeMarks:
    """What a regime did to a run's training set: ``noisy`` ``[N]`` bool (corrupted labels) and ``clean``
    ``[N]`` int64 (the true labels), both by training position; ``num_classes``; ``base_size``: the training
    set's size before a long tail was cut from it (``N`` without one; the batched engine's room per run)."""

    noisy: torch.Tensor
    clean: torch.Tensor
    num_classes: int
    base_size: int = 0

    def to(self, device: torch.device | str) -> RegimeMarks:
        """These marks on ``device``."""
        return RegimeMarks(self.noisy.to(device), self.clean.to(device), self.num_classes, self.base_size)

    def noisy_fraction(self) -> float:
        """The share of training labels that are corrupted, in [0, 1] (one host sync)."""
        return float(self.noisy.float().mean()) if self.noisy.numel() else 0.0

    def kept_shares(self, kept: list[torch.Tensor]) -> tuple[float, float, float]:
        """``(kept_noisy, kept_head, kept_tail)`` of epochs that trained the positions ``kept[e]``: the share of
        the kept samples whose label is corrupted, and the share of the head class's (class 0, the largest of a
        long tail) and of the tail class's (class K - 1) training samples kept, averaged over the epochs; in
        [0, 1], NaN where undefined (one host sync)."""
        idx = torch.cat([k.to(self.noisy.device) for k in kept]) if kept else self.noisy.new_zeros(0, dtype=torch.int64)
        nan = torch.tensor(float("nan"), device=self.noisy.device)
        shares = [self.noisy[idx].float().mean() if idx.numel() else nan]
        for c in (0, self.num_classes - 1):
            members = self.clean == c
            total = members.sum() * max(1, len(kept))
            shares.append(members[idx].sum() / total if bool(total) else nan)
        a, b, c_ = torch.stack(shares).tolist()
        return a, b, c_


def apply_regime(
    config: Any, train_idx: torch.Tensor, y_pool: torch.Tensor, y_val: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, RegimeMarks]:
    """``(train_idx', y_train, y_val', marks)``: ``config``'s regime (see the module docstring) applied to the
    seed's training positions ``train_idx`` of a pool labelled ``y_pool`` and to its validation labels
    ``y_val``; ``y_train`` are the (possibly noisy) labels of ``train_idx'``."""
    seed, base_size = config.seed, int(train_idx.numel())
    if config.imbalance > 1.0:
        keep = long_tail_subset(y_pool[train_idx], num_classes, config.imbalance, torch_generator(seed, "imbalance"))
        train_idx = train_idx[keep]
    clean = y_pool[train_idx]
    y_train, noisy = clean, torch.zeros(int(clean.numel()), dtype=torch.bool)
    if config.label_noise > 0.0:
        kind = config.label_noise_kind
        y_train, noisy = corrupt_labels(
            clean, num_classes, config.label_noise, kind, torch_generator(seed, "label-noise")
        )
        if not config.clean_val:
            y_val, _ = corrupt_labels(
                y_val, num_classes, config.label_noise, kind, torch_generator(seed, "label-noise-val")
            )
    return train_idx, y_train, y_val, RegimeMarks(noisy, clean, num_classes, base_size)
