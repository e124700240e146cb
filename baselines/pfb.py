"""``pfb``: Partial Forward Blocking, Wu, Guo, Zuo, Sang & Gao, ICCV 2025 (arXiv 2506.23674); see
``shared/METHODS.md``. The authors' public code (GitHub ``dywu98/OnlineDataPrune``, a "roughcast" Swin-T
ImageNet version) has the model forward only, so the density estimator is a reconstruction from the paper and
later descriptions.

Per mini-batch, inside the forward pass [paper, code]: the engine runs the shallow part on the whole batch
and calls the plan's ``selector(features, batch_indices)``; the ``floor((1 - p) B)`` rows of lowest density
(rare samples matter) go on through the deep part and the loss; no loss reweighting [code, 2nd]. Pruned rows
cost a shallow forward and backward only (the engine's meter charges that). The shallow split is the model's
setting (``RunConfig.model_split``), not the pruner's. The official ResNet splits after ``layer2`` [code:
``models/resnet.py`` at commit 2a749d9, lines 284-300, ``_forward_impl_phase1`` runs the stem, ``layer1`` and
``layer2``, lines 302-318 the rest; the training forward, lines 340-413, runs the first on the whole batch and
the second on the rows kept], and so does the ``resnet18`` preset by default (its 128 channels there are the
descriptor as they are; the official Swin-T splits after stage 1, ``models/swin_transformer.py`` lines
617-657). At ``p = 0.4`` a pruned epoch of the CIFAR ResNet-18 then costs about 0.806 of a full one
(shallow share 0.516 of a training step; 0.803 at batch 128, whose ``floor(0.6 * 128) = 76`` keeps less than
0.6); ``model_split="layer1"`` gives the earlier split (shallow share 0.274, about 0.710).

- descriptor ``[B, D]``: global average pool of the shallow features (4-D ``[B, C, H, W]``; any ``[B, C, ...]``
  is averaged over its trailing dims; 2-D ``[B, C]`` as is), then adjacent channels averaged down to
  ``D = 128`` when ``C > 128`` (``adaptive_avg_pool1d``) [code];
- density: Gaussian KDE over ``N_C = 100`` centres weighted by their shares of retained samples [2nd], in log
  space (logsumexp) with the diagonal Silverman bandwidth ``h_d = sigma_d (4 / ((D + 2) N_C))^(1/(D + 4))``
  [recon]; ``sigma_d`` is the per-dimension std of the current batch's descriptors [recon: tracks the
  shallow features as they change in training];
- noise: rank by ``log f + noise_scale * N(0, 1) * std_B(log f)`` (population std of the batch's
  log-densities; normal draws from the pruner generator; ``noise_scale = 0.1``) [recon]. The code default adds
  ``0.1 N(0, 1) max|f|`` to densities on the authors' unpublished scale [code]; applied to log-densities whose
  within-batch spread is tens of nats it ranked most rows by noise alone (near-random pruning), so the noise is
  scaled to the batch's spread: the density decides, the noise breaks near-ties. ``noise_scale = 0`` ranks by
  ``log f`` alone;
- centres: the first batch the pruner ever sees initialises them (its first ``N_C`` rows, or all of them if
  fewer; counts 1 each) [recon]; after every batch, the descriptors that went on (all rows on a full-data
  epoch, the kept rows on a pruned one) are assigned to their nearest centre (bandwidth-scaled distance), the
  counts are added and each centre that got rows moves toward their mean with EMA rate 0.01 [2nd, recon]. The
  official forward accumulates the estimator on its no-prune path too [code], so on every epoch that does not
  prune (prune ratio 0, and epoch 0 always) the plan still carries a selector: it keeps every row
  (``torch.arange(B)``) and absorbs them. The first pruned batch meets an estimator warmed up on the full-data
  epochs, not its own first rows.
- epoch 0 is never pruned, whatever the action or the run length.

Compute: the selector's own arithmetic is charged as its own pass category (``PassCounts.selector_flops``),
counted analytically from the shapes by :meth:`PFBSelector.flops` with ``FlopCounterMode``'s convention
(matrix products only, 2 FLOPs per multiply-add): with ``B`` rows in, ``K`` kept, ``N_C`` centres and
descriptor width ``D``, the density's distance matmul ``2 B N_C D`` (pruned epochs only), the centre
assignment's distance matmul ``2 K N_C D`` and the centre-sum matmul ``2 K N_C D``. Elementwise work
(pooling, norms, logsumexp, EMA) is not counted, as for the model's own passes, which ``FlopCounterMode``
measures the same way.

The selector never syncs with the host: its output length (``floor((1 - p) B)`` or ``B``) comes from the
batch shape and the rows from ``topk`` (or ``arange``). The policy
(:class:`PFBPolicy`) schedules the window of pruned epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Pruner

__all__ = ["PFBPruner", "PFBSelector", "descriptor"]


def descriptor(features: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """``[B, min(C, dim)]`` float32 descriptor of shallow ``features`` ``[B, C, ...]`` (see module doc)."""
    d = features.detach().float()
    if d.ndim > 2:
        d = d.flatten(2).mean(2)
    if d.shape[1] > dim:
        d = F.adaptive_avg_pool1d(d.unsqueeze(1), dim).squeeze(1)
    return d


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[A, B]`` between rows of ``a`` ``[A, D]`` and ``b`` ``[B, D]``."""
    return (a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * a @ b.t()).clamp_min(0.0)


def kept_in_batch(rows: int, prune_ratio: float) -> int:
    """``floor((1 - p) B)``: the rows of a batch of ``B`` that PFB keeps at prune ratio ``p > 0``."""
    return math.floor((1.0 - prune_ratio) * rows + 1e-9)


class PFBSelector:
    """One epoch's in-batch selector (see :class:`~prunegym.training.Selector`): at ``prune_ratio > 0`` the
    ``floor((1 - p) B)`` lowest-density rows, at 0 every row (the estimator's warm-up); both update the
    pruner's centres."""

    def __init__(self, pruner: PFBPruner, prune_ratio: float):
        self.pruner = pruner
        self.prune_ratio = float(prune_ratio)

    def __call__(self, features: torch.Tensor, batch_indices: torch.Tensor) -> torch.Tensor:
        return self.pruner.select(features, batch_indices, self.prune_ratio)

    def kept_rows(self, rows_in: int) -> int:
        """Rows of a batch of ``rows_in`` that go on to the deep part (what :meth:`PFBPruner.select` keeps)."""
        return rows_in if self.prune_ratio <= 0.0 else kept_in_batch(rows_in, self.prune_ratio)

    def flops(self, rows_in: int, rows_kept: int, feature_shape: tuple) -> float:
        """FLOPs of one call on ``rows_in`` rows of features ``feature_shape`` that kept ``rows_kept`` (see the
        module docstring): ``2 N_C D (B [pruning] + 2 K)``; host-side ints only."""
        p = self.pruner
        # Before the first batch the centres do not exist yet: price them at their number (an upper bound;
        # the first batch creates min(num_centres, its rows) of them).
        n_c = p.centres.shape[0] if p.centres is not None else p.num_centres
        d = min(int(feature_shape[1]), p.descriptor_dim)
        density_rows = rows_in if self.prune_ratio > 0.0 else 0
        return 2.0 * n_c * d * (density_rows + 2 * rows_kept)


class PFBPruner(Pruner):
    """Keeps the lowest-density ``floor((1 - p) B)`` rows of each batch (``p`` = the action's prune ratio;
    never at epoch 0); ``noise_scale`` (default 0.1) scales the tie-breaking noise to the batch's std of
    log-densities."""

    name = "pfb"
    in_batch_selector = True

    def __init__(
        self, num_centres: int = 100, descriptor_dim: int = 128, centre_rate: float = 0.01, noise_scale: float = 0.1
    ):
        if num_centres < 1 or descriptor_dim < 1:
            raise ValueError(f"num_centres={num_centres!r} and descriptor_dim={descriptor_dim!r} must be >= 1")
        if not 0.0 <= centre_rate <= 1.0:
            raise ValueError(f"centre_rate={centre_rate!r} must be in [0, 1]")
        if noise_scale < 0.0:
            raise ValueError(f"noise_scale={noise_scale!r} must be >= 0")
        self.num_centres = int(num_centres)
        self.descriptor_dim = int(descriptor_dim)
        self.centre_rate = float(centre_rate)
        self.noise_scale = float(noise_scale)

    def reset(self, num_samples: int, epochs: int, device, generator: torch.Generator) -> None:
        super().reset(num_samples, epochs, device, generator)
        self.centres: torch.Tensor | None = None  # [N_C, D]
        self.counts: torch.Tensor | None = None  # [N_C] retained samples assigned (float)

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        """Every sample, shuffled, with a :class:`PFBSelector` at the action's prune ratio (0 at epoch 0)."""
        p = float(action["prune_ratio"]) if epoch > 0 else 0.0
        plan = self.full_plan()
        plan.selector = PFBSelector(self, p)
        plan.claimed_prune_ratio = p
        return plan

    # -- the in-batch selection ----------------------------------------------------------------------------
    def bandwidth(self, desc: torch.Tensor) -> torch.Tensor:
        """Silverman's diagonal bandwidth ``[D]`` for descriptors ``desc`` ``[B, D]`` and ``N_C`` centres."""
        assert self.centres is not None  # set by select() from the first batch
        n_c, d = self.centres.shape
        sigma = desc.std(0, unbiased=False).clamp_min(1e-6)
        return sigma * (4.0 / ((d + 2) * n_c)) ** (1.0 / (d + 4))

    def log_density(self, desc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log f`` ``[B]`` of ``desc`` ``[B, D]`` under the count-weighted Gaussian KDE of the centres."""
        assert self.centres is not None and self.counts is not None  # set by select() from the first batch
        d2 = _sq_dist(desc / h, self.centres / h)  # [B, N_C]
        log_w = (self.counts / self.counts.sum()).log()
        norm = h.log().sum() + 0.5 * desc.shape[1] * math.log(2 * math.pi)
        return torch.logsumexp(log_w - 0.5 * d2, dim=1) - norm

    @torch.no_grad()
    def select(self, features: torch.Tensor, batch_indices: torch.Tensor, prune_ratio: float) -> torch.Tensor:
        """Rows int64 of ``features`` ``[B, ...]`` to keep: ``[floor((1 - p) B)]`` of lowest density at
        ``p > 0``, all ``[B]`` at ``p = 0``; updates the centres with the rows kept."""
        desc = descriptor(features, self.descriptor_dim)
        b = desc.shape[0]
        if self.centres is None:  # the first batch ever seen
            self.centres = desc[: self.num_centres].clone()
            self.counts = torch.ones(self.centres.shape[0], device=desc.device)
        h = self.bandwidth(desc)
        if prune_ratio <= 0.0:  # full-data epoch: keep every row, warm the estimator up
            self._absorb(desc, h)
            return torch.arange(b, device=desc.device)
        k = kept_in_batch(b, prune_ratio)
        log_f = self.log_density(desc, h)
        score = log_f  # without noise: rank by log density (no ties from underflow)
        if self.noise_scale > 0.0:
            gen = self.generator
            noise = torch.randn(b, generator=gen, device=gen.device).to(desc.device)
            score = log_f + self.noise_scale * noise * log_f.std(unbiased=False)
        rows = torch.topk(score, k, largest=False).indices
        self._absorb(desc[rows], h)
        return rows

    def _absorb(self, kept: torch.Tensor, h: torch.Tensor) -> None:
        """Assign kept descriptors ``[K, D]`` to their nearest centres; add counts; move centres (EMA)."""
        assert self.centres is not None and self.counts is not None  # set by select() from the first batch
        nearest = _sq_dist(kept / h, self.centres / h).argmin(1)  # [K]
        centre_ids = torch.arange(self.centres.shape[0], device=kept.device)
        onehot = (nearest.unsqueeze(1) == centre_ids).to(kept.dtype)  # [K, N_C] (F.one_hot would sync)
        n = onehot.sum(0)  # [N_C]
        sums = onehot.t() @ kept  # [N_C, D]
        mean = sums / n.clamp_min(1.0).unsqueeze(1)
        moved = self.centres + self.centre_rate * (mean - self.centres)
        self.centres = torch.where((n > 0).unsqueeze(1), moved, self.centres)
        self.counts = self.counts + n


# -- the published schedule ------------------------------------------------------------------------------------
# PFB's schedule (Wu et al., ICCV 2025) [code]: full data outside a window of pruned epochs, prune ratio
# ``p`` inside it.
#
# Window (0-based epochs): ``start <= e < end`` with ``start = max(1, round(start_fraction * E))`` and
# ``end = round(end_fraction * E)`` (half up); the defaults 16/300 and 260/300 give exactly the authors'
# Swin-T example (full for epochs 0-15 and 260-299 of 300: the first ~5% and last ~13%); for ``E = 10``: full
# for epoch 0 and epoch 9. Epoch 0 is never pruned, whatever the run length (``start >= 1``; the pruner
# enforces it too): its full-data epochs warm the density estimator up. Default ``p = 0.4``, the ratio of the
# paper's headline ImageNet ResNet-50 result (40% pruned, 76.4 -> 76.9) [paper, 2nd].
#


def pfb_window(start_fraction: float, end_fraction: float, epochs: int) -> tuple[int, int]:
    """``(start, end)``: epochs ``start <= e < end`` are pruned; rounding half up, ``start >= 1`` (epoch 0 is
    never pruned) and ``end >= start``."""
    start = max(1, math.floor(start_fraction * epochs + 0.5))
    return start, max(start, math.floor(end_fraction * epochs + 0.5))


class PFBPolicy(FixedPolicy):
    name = "pfb"
    pruner = "pfb"
    defaults = {"prune_ratio": 0.4, "start_fraction": 16 / 300, "end_fraction": 260 / 300}
    sampler_unfit = "selects rows inside the forward pass (after the shallow part)"

    def validate(self) -> None:
        super().validate()
        s, e = self.hparams["start_fraction"], self.hparams["end_fraction"]
        if not 0.0 <= s <= e <= 1.0:
            raise ValueError(f"start_fraction={s!r}, end_fraction={e!r}: need 0 <= start_fraction <= end_fraction <= 1")

    def schedule(self, epoch: int) -> dict[str, float]:
        start, end = pfb_window(self.hparams["start_fraction"], self.hparams["end_fraction"], self.epochs)
        return {"prune_ratio": self.hparams["prune_ratio"] if start <= epoch < end else 0.0}
