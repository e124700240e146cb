"""``pfb``: Partial Forward Blocking, Wu, Guo, Zuo, Sang & Gao, ICCV 2025 (arXiv 2506.23674); see
``shared/METHODS.md``. The authors' public code has the model forward only, so the density estimator is a
reconstruction from the paper and later descriptions.

Per mini-batch, inside the forward pass [paper, code]: the engine runs the shallow part on the whole batch
and calls the plan's ``selector(features, batch_indices)``; the ``floor((1 - p) B)`` rows of lowest density
(rare samples matter) go on through the deep part and the loss; no loss reweighting [code, 2nd]. Pruned rows
cost a shallow forward and backward only (the engine's meter charges that). The shallow split is the model's
setting (``RunConfig.model_split``), not the pruner's.

- descriptor ``[B, D]``: global average pool of the shallow features (4-D ``[B, C, H, W]``; any ``[B, C, ...]``
  is averaged over its trailing dims; 2-D ``[B, C]`` as is), then adjacent channels averaged down to
  ``D = 128`` when ``C > 128`` (``adaptive_avg_pool1d``) [code];
- density: Gaussian KDE over ``N_C = 100`` centres weighted by their shares of retained samples [2nd], in log
  space (logsumexp) with the diagonal Silverman bandwidth ``h_d = sigma_d (4 / ((D + 2) N_C))^(1/(D + 4))``
  [recon]; ``sigma_d`` is the per-dimension std of the current batch's descriptors [recon: tracks the
  shallow features as they change in training];
- noise: of METHODS.md's two options, the code default ``score = f + 0.1 N(0, 1) max|f|``, evaluated as
  ``f / max f + 0.1 N(0, 1)`` (same ranking, no underflow), normal draws from the pruner generator [code];
  ``noise_scale = 0`` ranks by ``log f`` alone;
- centres: the first selecting batch's descriptors (its first ``N_C`` rows, or all of them if fewer), counts
  1 each [recon: so the first batch has a density]; after each selection every kept descriptor is assigned to
  its nearest centre (bandwidth-scaled distance), the counts are added and each centre that got rows moves
  toward their mean with EMA rate 0.01 [2nd, recon].

The selector never syncs with the host: its output length ``floor((1 - p) B)`` comes from the batch shape
and the rows from ``topk``. At ``p = 0`` the plan is the plain full data without a selector; the policy
(:class:`~prunegym.baselines.pfb_policy.PFBPolicy`) schedules the window of pruned epochs.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from prunegym.training import EpochPlan, ScoreTable

from .base import Pruner, prune_ratio_of

__all__ = ["PFBPruner", "descriptor"]


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


class PFBPruner(Pruner):
    """Keeps the lowest-density ``floor((1 - p) B)`` rows of each batch (``p`` = the action's prune ratio)."""

    name = "pfb"
    in_batch_selector = True

    def __init__(self, num_centres: int = 100, descriptor_dim: int = 128, centre_rate: float = 0.01,
                 noise_scale: float = 0.1):
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
        p = prune_ratio_of(action)
        plan = self.full_plan()
        if p > 0.0:
            plan.selector = lambda features, batch_indices: self.select(features, batch_indices, p)
            plan.claimed_prune_ratio = p
        return plan

    # -- the in-batch selection ----------------------------------------------------------------------------
    def bandwidth(self, desc: torch.Tensor) -> torch.Tensor:
        """Silverman's diagonal bandwidth ``[D]`` for descriptors ``desc`` ``[B, D]`` and ``N_C`` centres."""
        n_c, d = self.centres.shape
        sigma = desc.std(0, unbiased=False).clamp_min(1e-6)
        return sigma * (4.0 / ((d + 2) * n_c)) ** (1.0 / (d + 4))

    def log_density(self, desc: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``log f`` ``[B]`` of ``desc`` ``[B, D]`` under the count-weighted Gaussian KDE of the centres."""
        d2 = _sq_dist(desc / h, self.centres / h)  # [B, N_C]
        log_w = (self.counts / self.counts.sum()).log()
        norm = h.log().sum() + 0.5 * desc.shape[1] * math.log(2 * math.pi)
        return torch.logsumexp(log_w - 0.5 * d2, dim=1) - norm

    @torch.no_grad()
    def select(self, features: torch.Tensor, batch_indices: torch.Tensor, prune_ratio: float) -> torch.Tensor:
        """Rows ``[floor((1 - p) B)]`` int64 of ``features`` ``[B, ...]`` to keep; updates the centres."""
        desc = descriptor(features, self.descriptor_dim)
        b = desc.shape[0]
        k = math.floor((1.0 - prune_ratio) * b + 1e-9)
        if self.centres is None:
            self.centres = desc[:self.num_centres].clone()
            self.counts = torch.ones(self.centres.shape[0], device=desc.device)
        h = self.bandwidth(desc)
        log_f = self.log_density(desc, h)
        score = log_f  # without noise: rank by log density (no ties from underflow)
        if self.noise_scale > 0.0:
            gen = self.generator
            noise = torch.randn(b, generator=gen, device=gen.device).to(desc.device)
            score = (log_f - log_f.max()).exp() + self.noise_scale * noise  # f / max f + 0.1 N(0, 1)
        rows = torch.topk(score, k, largest=False).indices
        self._absorb(desc[rows], h)
        return rows

    def _absorb(self, kept: torch.Tensor, h: torch.Tensor) -> None:
        """Assign kept descriptors ``[K, D]`` to their nearest centres; add counts; move centres (EMA)."""
        nearest = _sq_dist(kept / h, self.centres / h).argmin(1)  # [K]
        centre_ids = torch.arange(self.centres.shape[0], device=kept.device)
        onehot = (nearest.unsqueeze(1) == centre_ids).to(kept.dtype)  # [K, N_C] (F.one_hot would sync)
        n = onehot.sum(0)  # [N_C]
        sums = onehot.t() @ kept  # [N_C, D]
        mean = sums / n.clamp_min(1.0).unsqueeze(1)
        moved = self.centres + self.centre_rate * (mean - self.centres)
        self.centres = torch.where((n > 0).unsqueeze(1), moved, self.centres)
        self.counts = self.counts + n
