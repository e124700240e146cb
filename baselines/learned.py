"""``learned``: one parametric keep mechanism that spans the published baselines, for pruning policies
learned by RL agents (issue 7); see ``shared/METHODS.md`` for the methods it maps.

Per epoch (after ``warmup_epochs`` full-data epochs, default 1, since there are no scores before the first
one; ``r = 0`` also gives the full data with all weights 1), with ``N`` samples and the action's prune ratio
``r`` (component 0 of the env's action):

* **Budget.** ``K = kept_count(N, r) = ceil((1 - r) N)`` samples are kept: ``r`` is the realised kept fraction
  (not InfoBatch's ratio of the below-mean set), the direct control of the overall fraction users of InfoBatch
  asked for.
* **Score.** ``score_i = mu_i + optimism * sqrt(v_i)`` with ``mu`` = ``ScoreTable.ema`` (Raju et al.'s EMA of
  the per-sample loss, updated only for trained samples; it equals the latest loss after a sample's first
  observation and smooths the bandit noise after that) and ``v`` = ``ScoreTable.ema_var``. The constructor
  argument ``score="loss"`` uses the latest unweighted loss instead (``ScoreTable.loss``, InfoBatch's score);
  ``optimism`` (constructor, default 0) is Raju's UCB weight ``c``. Samples without a recorded loss of their
  own (``ScoreTable.observed`` False; none after a full-data warm-up) rank above all others (optimistic: unknown
  = hard); NaN scores rank as hardest too. Only ranks are used: ``u_i = rank_i / (N - 1) - 0.5`` in
  ``[-0.5, 0.5]`` (rank 0 = lowest score, ties broken at random from the pruner's generator), so the knobs
  mean the same thing on any task, loss scale and training-set size.
* **Knob ``greedy``** ``g`` in [0, 1] (default 0): the share of the budget filled, without a draw, with the
  highest-score samples: ``G = K - floor((1 - g) K)`` of them (epsilon-greedy's ``ceil((1 - eps) K)`` at
  ``g = 1 - eps``). They get weight 1.
* **Knob ``sharpness``** ``s`` in [-1, 1] (default 0): the other ``K - G`` are drawn without replacement from
  the remaining ``N - G`` samples by Gumbel-top-k on the logits ``beta(s) u_i`` (i.e. successive sampling with
  probability proportional to ``exp(beta u_i)``), ``beta(s) = beta_scale * tan(pi s / 2)`` (``beta_scale`` =
  :data:`BETA_SCALE` = 4: ``s = 0.5`` gives odds ``e^4 ~ 55`` between the hardest and the easiest sample,
  ``s = 0.9`` about 96% overlap with the greedy set at ``K = N / 2``). ``s = 0`` is exactly uniform without
  replacement; ``s -> +1`` approaches "keep the hardest" and ``s -> -1`` "keep the easiest"; ``s = +-1``
  (after rounding the float32 action to 6 decimals) *is* the greedy rule: the ``K - G`` highest (lowest)
  ranked of the rest, no draw. The range [-1, 1] already spans ``beta`` in (-inf, inf), so no wider range is
  needed; ``tan`` spends the action range evenly on the regimes in between.
* **Knob ``rescale``** ``a`` in [0, 1] (default 0): loss weight ``w_i = min(p_i^(-a), max_weight)`` for a drawn
  sample, 1 for a greedy one, where ``p_i`` is the sample's inclusion probability under the scheme that drew
  it. ``a = 0``: no reweighting (Raju); ``a = 1``: Horvitz-Thompson importance weights ``1 / p_i``, so the
  epoch's weighted loss sum is an unbiased estimate of the full-data sum (InfoBatch's argument for its
  ``1 / (1 - r)``; for the uniform scheme ``p_i = K / N`` and ``w = N / K``, i.e. ``1 / (1 - r)`` up to the
  rounding of ``K``). The weights are *not* normalised (as InfoBatch's are not; the engine's batch loss is
  ``mean(w_i loss_i)``) but clipped at ``max_weight`` (constructor, default :data:`MAX_WEIGHT` = 10 =
  ``1 / (1 - 0.9)``: the env's default maximum prune ratio and InfoBatch's cap ``r <= 0.9`` [code]), since a
  sample with a tiny ``p_i`` would otherwise dominate its batch.
  ``p_i`` of Gumbel-top-k without replacement has no closed form; we use the order-sampling (exponential
  race) approximation ``p_i = 1 - exp(-exp(l_i) t)`` with ``t`` solved (bisection, on the device, no host sync)
  so that ``sum p_i = K - G``: Gumbel-top-k keeps the ``K - G`` first arrivals of independent exponential
  clocks of rates ``exp(l_i)``, and ``t`` stands in for the random ``(K - G)``-th arrival time; this is the
  large-sample approximation of successive (Plackett-Luce) sampling (Rosen 1972, Ann. Math. Statist. 43;
  Rosen 1997, J. Statist. Plann. Inference 62, order sampling) [recon: its use here is ours]. It is exact for
  the uniform scheme (``p = (K - G) / (N - G)``) and in the greedy limits (0 and 1), and within about 0.01 of
  Monte-Carlo estimates in between (checked in ``tests/test_learned.py``); the naive
  ``min(1, K softmax(l)_i)`` is off by up to 1 there and does not sum to ``K``. The draw does not depend on
  ``rescale``: the same seed keeps the same samples at any ``a``.

Mappings of the baselines (:func:`mapped_action` builds these actions; ``tests/test_learned.py`` checks
them on hand-made score tables):

* **Raju et al. 2021 uniform** (arXiv 2111.12621 [paper]): ``sharpness = 0, greedy = 0, rescale = 0``: the same
  law of kept sets as :class:`~prunegym.baselines.uniform.UniformPruner`. ``rescale = 1`` is the
  ``uniform_rescaled`` control of METHODS.md ("uniform with InfoBatch's rescaling") with ``w = N / K``.
* **Raju et al. epsilon-greedy** (METHODS.md [2nd] for the rule, eps = 0.1 [recon]): ``greedy = 1 - eps,
  sharpness = 0, rescale = 0``: the top ``ceil((1 - eps) K)`` by ``mu`` plus ``floor(eps K)`` uniformly from
  the rest, the same law as :class:`~prunegym.baselines.epsilon_greedy.EpsilonGreedyPruner`.
* **Raju et al. UCB** (METHODS.md [2nd], c = 1 [recon]): ``sharpness = 1`` keeps the top ``K`` by ``mu`` (UCB
  with ``c = 0``, epsilon-greedy with ``eps = 0``); with the constructor argument ``optimism = c`` it keeps the
  top ``K`` by ``mu + c sqrt(v)``, exactly :class:`~prunegym.baselines.ucb.UCBPruner`'s set. UCB-like
  exploration of the default pruner: ``sharpness`` in (0, 1) (exploration by randomisation instead of optimism).
* **InfoBatch** (Qin et al., ICLR 2024 [paper, code]; needs ``score="loss"`` to protect exactly InfoBatch's
  ``D2``, with the default ``ema`` it protects the top ``|D2|`` by ``mu``): with ``|D1|`` the number of samples
  below the mean latest loss (the ``frac_below_mean`` feature times ``N``) and InfoBatch's ratio ``r_ib``
  (keep ratio ``keep = min(1, max(0.1, 1 - r_ib))``): ``K = |D2| + int(keep |D1|)``, InfoBatch's exact count
  (prune ratio ``~ r_ib |D1| / N``), ``greedy = |D2| / K``
  (all of ``D2`` kept, weight 1), ``sharpness = 0`` (the rest drawn uniformly from ``D1``), ``rescale = 1``
  (weight ``|D1| / int(keep |D1|) ~ 1 / keep`` on the ``D1`` part). The annealing epochs are
  ``r = 0``. The policy, not the pruner, supplies the state-dependent ``K`` and ``greedy``.
* **Keep the hardest / easiest** (the greedy ends): ``sharpness = +1 / -1``. **SwDPP-like** soft selection
  (METHODS.md [recon]): ``sharpness`` in (0, 1) draws hard samples more often while every sample keeps a
  positive probability (over loss ranks, not ``softmax(s / std(s))`` with a uniform floor).
* Not expressible: PFB's in-batch density selector and SwDPP's probabilistic Mixup (other mechanisms, not keep
  sets).

Why these three knobs: each is one axis the baselines differ on (how greedy, how tilted the rest is, how much
reweighting), and together with ``r`` they give a 4-dimensional action. ``greedy`` is a share of the kept
budget, not of ``N``, so it means the same at every ``r`` (epsilon-greedy is ``greedy = 1 - eps`` whatever the
ratio) and can never ask for more than ``K``. UCB's ``c`` and the choice of score stay constructor arguments:
exact UCB needs ``c`` only at ``sharpness = 1``, and randomised exploration (``sharpness`` below 1) covers
UCB's purpose without a fifth action dimension.

Random draws (tie-breaking permutation, Gumbel noise, the shuffle) come from the generator handed to
:meth:`reset`; the global RNGs are never touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import Knob, Pruner, kept_count
from .infobatch import kept_of_d1

__all__ = ["BETA_SCALE", "LearnedPruner", "MAX_WEIGHT", "inclusion_probabilities", "mapped_action", "sharpness_beta"]

BETA_SCALE = 4.0  # beta(s) = BETA_SCALE * tan(pi s / 2): logit spread over the loss ranks
MAX_WEIGHT = 10.0  # clip of the importance weights: 1 / (1 - 0.9)
SCORES = ("ema", "loss")
_RACE_MARGIN = math.log(40.0)  # at z = -l_(k) + this, the k top samples have p >= 1 - e^-40
_BISECTIONS = 64


def sharpness_beta(sharpness: float, beta_scale: float = BETA_SCALE) -> float:
    """``beta_scale * tan(pi s / 2)``; +-inf at ``s = +-1`` (the greedy rules)."""
    s = float(sharpness)
    if s >= 1.0:
        return math.inf
    if s <= -1.0:
        return -math.inf
    return beta_scale * math.tan(0.5 * math.pi * s)


@torch.no_grad()
def inclusion_probabilities(logits: torch.Tensor, k: int, spread: float | None = None) -> torch.Tensor:
    """Approximate inclusion probabilities ``[n]`` of Gumbel-top-``k`` without replacement on finite ``logits``
    ``[n]``: ``p_i = 1 - exp(-exp(l_i) t)`` with ``sum p_i = k`` (order-sampling approximation, see the module
    docstring). ``t`` is found by bisection on ``log t`` with tensor-valued bounds (no host sync), to 1e-9 in
    ``log t`` when ``spread`` (an upper bound on ``max(logits) - min(logits)``, known to the caller) is given,
    else with 64 halvings."""
    n = logits.numel()
    if k <= 0:
        return torch.zeros_like(logits, dtype=torch.float64)
    if k >= n:
        return torch.ones_like(logits, dtype=torch.float64)
    l = logits.to(torch.float64)
    l = l - l.max()
    # lo: even the largest logit (0) gives sum <= n (1 - exp(-e^lo)) = k; hi: the k largest have p ~ 1.
    lo = torch.full((), math.log(-math.log1p(-k / n)), dtype=torch.float64, device=l.device)
    hi = torch.maximum(_RACE_MARGIN - torch.topk(l, k).values[-1], lo)
    iters = _BISECTIONS if spread is None else min(_BISECTIONS, math.ceil(math.log2((abs(spread) + 20.0) / 1e-9)))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        short = (-torch.expm1(-torch.exp(l + mid))).sum() < k
        lo = torch.where(short, mid, lo)
        hi = torch.where(short, hi, mid)
    return -torch.expm1(-torch.exp(l + 0.5 * (lo + hi)))


def _ratio_for_count(num_samples: int, kept: int) -> float:
    """A prune ratio whose ``kept_count`` is ``kept``, robust to float32 / 6-decimal round-off (half a sample)."""
    if kept >= num_samples:
        return 0.0
    return (num_samples - kept + 0.5) / num_samples


def mapped_action(
    method: str,
    prune_ratio: float,
    *,
    epsilon: float = 0.1,
    num_samples: int | None = None,
    num_below_mean: int | None = None,
) -> dict[str, float]:
    """The decoded ``learned`` action (``{"prune_ratio", "sharpness", "rescale", "greedy"}``) that reproduces
    ``method``'s keep set at ``prune_ratio`` (see the module docstring): ``"uniform"``, ``"uniform_rescaled"``,
    ``"epsilon_greedy"`` (``epsilon``), ``"ucb"`` / ``"keep_hardest"`` (UCB's ``c`` is the pruner's
    ``optimism``), ``"keep_easiest"``, ``"infobatch"`` (``prune_ratio`` is InfoBatch's ratio of the below-mean
    set; needs ``num_samples`` and ``num_below_mean`` = ``|D1|``; use with ``LearnedPruner(score="loss")``).
    Encode it with ``env.encode_action(**action)``."""
    r = float(prune_ratio)
    if method == "uniform":
        return {"prune_ratio": r, "sharpness": 0.0, "rescale": 0.0, "greedy": 0.0}
    if method == "uniform_rescaled":
        return {"prune_ratio": r, "sharpness": 0.0, "rescale": 1.0, "greedy": 0.0}
    if method == "epsilon_greedy":
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon={epsilon!r} must be in [0, 1]")
        return {"prune_ratio": r, "sharpness": 0.0, "rescale": 0.0, "greedy": 1.0 - float(epsilon)}
    if method in ("ucb", "keep_hardest"):
        return {"prune_ratio": r, "sharpness": 1.0, "rescale": 0.0, "greedy": 0.0}
    if method == "keep_easiest":
        return {"prune_ratio": r, "sharpness": -1.0, "rescale": 0.0, "greedy": 0.0}
    if method == "infobatch":
        if num_samples is None or num_below_mean is None or not 0 <= num_below_mean <= num_samples:
            raise ValueError("infobatch needs num_samples and num_below_mean (|D1|, 0 <= |D1| <= N)")
        n, n1 = int(num_samples), int(num_below_mean)
        n2 = n - n1
        k = n2 + kept_of_d1(r, n1)  # int(keep * |D1|), keep = min(1, max(0.1, 1 - r)) [code]
        if r <= 0.0 or k >= n:
            return {"prune_ratio": 0.0, "sharpness": 0.0, "rescale": 1.0, "greedy": 0.0}
        greedy = (n2 - 0.5) / k if n2 > 0 else 0.0  # G = ceil(greedy K) = |D2|, half a sample of slack
        return {"prune_ratio": _ratio_for_count(n, k), "sharpness": 0.0, "rescale": 1.0, "greedy": greedy}
    raise ValueError(
        f"unknown method {method!r}; allowed: uniform, uniform_rescaled, epsilon_greedy, ucb, "
        "keep_hardest, keep_easiest, infobatch"
    )


class LearnedPruner(Pruner):
    """A learnable keep mechanism: greedy share, selection sharpness over loss ranks, importance rescaling
    (see the module docstring for the definitions and the baselines each setting reproduces).

    Constructor: ``warmup_epochs`` (default 1) full-data epochs first; ``score`` ``"ema"`` (default, Raju's
    ``mu``) or ``"loss"`` (latest loss, InfoBatch's); ``optimism`` ``c >= 0`` adds ``c sqrt(ema_var)`` to the
    score (UCB); ``max_weight >= 1`` clips the importance weights; ``beta_scale > 0`` scales ``beta(s)``.
    """

    name = "learned"
    knobs = (
        Knob(
            "sharpness",
            -1.0,
            1.0,
            0.0,
            "selection over loss ranks: -1 keep the easiest, 0 uniform, +1 keep the hardest (Gumbel-top-k)",
        ),
        Knob(
            "rescale",
            0.0,
            1.0,
            0.0,
            "importance weight p^-rescale of drawn samples: 0 none, 1 full 1/p (Horvitz-Thompson), clipped",
        ),
        Knob(
            "greedy",
            0.0,
            1.0,
            0.0,
            "share of the kept budget given, without a draw, to the highest-score samples (weight 1)",
        ),
    )

    def __init__(
        self,
        warmup_epochs: int = 1,
        score: str = "ema",
        optimism: float = 0.0,
        max_weight: float = MAX_WEIGHT,
        beta_scale: float = BETA_SCALE,
    ):
        if not isinstance(warmup_epochs, int) or isinstance(warmup_epochs, bool) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be an int >= 0")
        if score not in SCORES:
            raise ValueError(f"score={score!r}; allowed: {', '.join(SCORES)}")
        if not (math.isfinite(optimism) and optimism >= 0.0):
            raise ValueError(f"optimism={optimism!r} must be a finite number >= 0")
        if not (math.isfinite(max_weight) and max_weight >= 1.0):
            raise ValueError(f"max_weight={max_weight!r} must be a finite number >= 1")
        if not (math.isfinite(beta_scale) and beta_scale > 0.0):
            raise ValueError(f"beta_scale={beta_scale!r} must be a finite number > 0")
        self.warmup_epochs = warmup_epochs
        self.score = score
        self.optimism = float(optimism)
        self.max_weight = float(max_weight)
        self.beta_scale = float(beta_scale)

    def score_values(self, scores: ScoreTable) -> torch.Tensor:
        """``[N]`` the selection score on the device: ``mu + optimism sqrt(v)`` (or the latest loss), +inf for
        samples without a recorded loss and for NaN."""
        base = scores.loss if self.score == "loss" else scores.ema
        score = base.to(self.device)
        if self.optimism > 0.0:
            score = score + self.optimism * scores.ema_var.to(self.device).clamp_min(0.0).sqrt()
        unknown = ~scores.observed.to(self.device) | torch.isnan(score)
        return torch.where(unknown, torch.full_like(score, math.inf), score)

    def ascending_order(self, scores: ScoreTable) -> torch.Tensor:
        """``[N]`` indices from the lowest score to the highest, ties in random order (pruner's generator)."""
        score = self.score_values(scores)
        perm = torch.randperm(score.numel(), generator=self.generator, device=self.device)
        return perm[torch.argsort(score[perm], stable=True)]

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        if epoch < self.warmup_epochs or r <= 0.0:
            return self.full_plan()
        n = self.num_samples
        k = kept_count(n, r)
        if k >= n:
            plan = self.full_plan()
            plan.claimed_prune_ratio = r
            return plan
        sharp = self.knob(action, "sharpness")  # exact: the env's codec removed the float32 round-off
        rescale = self.knob(action, "rescale")
        eps = 1.0 - self.knob(action, "greedy")
        g = k - min(k, max(0, math.floor(eps * k + 1e-9)))  # epsilon-greedy's ceil((1 - eps) K) at eps = 1 - greedy
        order = self.ascending_order(scores)
        protected, rest = order[n - g :], order[: n - g]
        n2, k2 = n - g, k - g
        beta = sharpness_beta(sharp, self.beta_scale)
        dev, f64 = self.device, torch.float64
        p = None  # inclusion probabilities of the drawn samples (None: all 1)
        if k2 == 0:
            drawn = rest[:0]
        elif math.isinf(beta):
            drawn = rest[n2 - k2 :] if beta > 0 else rest[:k2]  # greedy: the highest (lowest) ranked of the rest
        else:
            # rest[j] has rank j among all N: u = rank / (N - 1) - 0.5
            u = torch.arange(n2, dtype=f64, device=dev) / max(n - 1, 1) - 0.5
            logits = beta * u
            unif = torch.rand(n2, generator=self.generator, device=dev, dtype=f64)
            gumbel = -torch.log(-torch.log(unif.clamp_min(1e-300)))
            pos = torch.topk(logits + gumbel, k2).indices
            drawn = rest[pos]
            if rescale > 0.0:
                if beta == 0.0:
                    p = torch.full((k2,), k2 / n2, dtype=f64, device=dev)
                else:
                    p = inclusion_probabilities(logits, k2, spread=abs(beta))[pos]
        indices = torch.cat([protected, drawn])
        weights = None
        if rescale > 0.0:
            drawn_w = (
                torch.ones(k2, dtype=f64, device=dev)
                if p is None
                else p.clamp_min(1e-300).pow(-rescale).clamp(max=self.max_weight)
            )
            weights = torch.cat([torch.ones(g, dtype=f64, device=dev), drawn_w]).to(torch.float32)
        plan = self.shuffled(indices, weights)
        plan.claimed_prune_ratio = r
        return plan
