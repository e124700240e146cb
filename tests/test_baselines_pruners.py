"""Direct tests of the score-based pruners on hand-made score tables: InfoBatch's exact counts and weights,
Raju et al.'s epsilon-greedy and UCB rankings, SwDPP's soft sampling and probabilistic Mixup, and seeded
reproducibility of every pruner."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prunegym.baselines import (
    PRUNERS,
    EpsilonGreedyPruner,
    InfoBatchPruner,
    SwDPPPruner,
    UCBPruner,
    kept_count,
    make_pruner,
)
from prunegym.baselines.swdpp import sampling_distribution
from prunegym.envs import ActionCodec
from prunegym.training import ScoreTable

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reset(pruner, n: int, seed: int = 0, epochs: int = 10):
    pruner.reset(n, epochs, "cpu", gen(seed))
    return pruner


def table(loss=None, ema=None, ema_var=None) -> ScoreTable:
    n = len(next(v for v in (loss, ema, ema_var) if v is not None))
    t = ScoreTable(n)
    for name, v in (("loss", loss), ("ema", ema), ("ema_var", ema_var)):
        if v is not None:
            getattr(t, name).copy_(torch.as_tensor(v, dtype=torch.float32))
    return t


def skewed_losses(n: int, seed: int = 1) -> torch.Tensor:
    """Right-skewed per-sample losses [n] (exponential), like cross-entropy late in training."""
    return -torch.rand(n, generator=gen(seed)).log()


def full_action(pruner, r: float) -> dict:
    return {"prune_ratio": r, **{k.name: k.default for k in pruner.knobs}}


# -- InfoBatch -------------------------------------------------------------------------------------------------
def test_infobatch_first_epoch_keeps_all_when_scores_equal():
    p = reset(InfoBatchPruner(), 100)
    plan = p.plan(0, ScoreTable(100), {"prune_ratio": 0.5})
    assert sorted(plan.indices.tolist()) == list(range(100))
    assert plan.weights is None or torch.all(plan.weights == 1)


@pytest.mark.parametrize("r", [0.3, 0.5, 0.7])
def test_infobatch_exact_count_weights_and_membership(r):
    n = 1000
    loss = skewed_losses(n)
    d1 = set(torch.nonzero(loss < loss.mean()).view(-1).tolist())
    p = reset(InfoBatchPruner(), n)
    plan = p.plan(3, table(loss=loss), {"prune_ratio": r})
    idx, w = plan.indices.tolist(), plan.weights.tolist()
    assert len(set(idx)) == len(idx)  # without replacement
    assert len(idx) == (n - len(d1)) + math.floor((1 - r) * len(d1))
    assert set(range(n)) - d1 <= set(idx)  # all of D2 kept
    for i, wi in zip(idx, w):
        assert wi == pytest.approx(1 / (1 - r) if i in d1 else 1.0)
    assert idx != sorted(idx)  # shuffled
    assert plan.claimed_prune_ratio == pytest.approx(r)


def test_infobatch_draws_d1_uniformly():
    n, r, trials = 200, 0.5, 300
    loss = skewed_losses(n)
    d1 = torch.nonzero(loss < loss.mean()).view(-1)
    p = reset(InfoBatchPruner(), n)
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[p.plan(1, table(loss=loss), {"prune_ratio": r}).indices] += 1
    freq = counts[d1] / trials
    assert abs(float(freq.mean()) - (1 - r)) < 0.01
    # lowest- and highest-loss halves of D1 are kept equally often (not a ranking)
    order = d1[torch.argsort(loss[d1])]
    half = order.numel() // 2
    assert abs(float(counts[order[:half]].mean() - counts[order[half:]].mean())) / trials < 0.05


def test_infobatch_ratio_capped_at_keep_ratio_one_tenth():
    n = 1000
    loss = skewed_losses(n)
    n1 = int((loss < loss.mean()).sum())
    p = reset(InfoBatchPruner(), n)
    plan = p.plan(1, table(loss=loss), {"prune_ratio": 0.97})
    assert plan.indices.numel() == (n - n1) + math.floor(0.1 * n1)
    assert float(plan.weights.max()) == pytest.approx(10.0)


def test_infobatch_ratio_zero_is_full_data_weight_one():
    p = reset(InfoBatchPruner(), 300)
    plan = p.plan(8, table(loss=skewed_losses(300)), {"prune_ratio": 0.0})
    assert sorted(plan.indices.tolist()) == list(range(300))
    assert plan.weights is None or torch.all(plan.weights == 1)


def test_float32_action_roundoff_does_not_change_counts():
    """An env action passes through float32; the counts must be those of the intended ratio. The env's codec is
    the one place that removes the round-off (issue 13): every action reaches the pruners through it."""
    n = 4000
    loss = skewed_losses(n)
    codec = ActionCodec(0.9, ())
    for r in (0.1, 0.2, 0.3, 0.4):
        a32 = np.asarray(codec.encode(r), dtype=np.float32)
        assert codec.decode(a32)["prune_ratio"] == r  # the codec rounds the float32 round-off away
        raw = (float(a32[0]) + 1.0) * 0.5 * 0.9
        assert raw != r  # the round-off this test is about
        decoded = codec.decode(a32)
        for name in ("infobatch", "uniform", "epsilon_greedy", "ucb", "swdpp"):
            pr = make_pruner(name)
            a, b = reset(pr, n), reset(make_pruner(name), n)
            knobs = ActionCodec(0.9, pr.knobs)
            through_env = knobs.decode(np.asarray(knobs.encode(**full_action(pr, r)), dtype=np.float32))
            scores = table(loss=loss, ema=loss, ema_var=loss)
            k_exact = a.plan(2, scores, full_action(a, r)).indices.numel()
            k_decoded = b.plan(2, scores, {**through_env, **decoded}).indices.numel()
            assert k_decoded == k_exact, (name, r)


def test_uniform_draws_every_sample_equally_often():
    n, trials = 300, 200
    p = reset(make_pruner("uniform"), n)
    counts = torch.zeros(n)
    for _ in range(trials):
        plan = p.plan(1, ScoreTable(n), {"prune_ratio": 0.6, "rescale": 0.0})
        assert plan.indices.numel() == kept_count(n, 0.6) and plan.weights is None
        counts[plan.indices] += 1
    freq = counts / trials
    assert abs(float(freq.mean()) - 0.4) < 1e-6 and float(freq.std()) < 0.06  # binomial std ~0.035


# -- Raju et al.: epsilon-greedy and UCB ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [EpsilonGreedyPruner, UCBPruner])
def test_raju_warmup_epoch_keeps_all_and_no_weights(cls):
    n = 500
    p = reset(cls(), n)
    scores = table(ema=skewed_losses(n), ema_var=skewed_losses(n, 2))
    assert sorted(p.plan(0, scores, full_action(p, 0.5)).indices.tolist()) == list(range(n))
    plan = p.plan(1, scores, full_action(p, 0.5))
    assert plan.indices.numel() == kept_count(n, 0.5) and plan.weights is None


@pytest.mark.parametrize("n,r,eps", [(1000, 0.5, 0.1), (999, 0.3, 0.25), (500, 0.7, 0.0)])
def test_epsilon_greedy_top_part_and_random_part(n, r, eps):
    mu = skewed_losses(n)
    p = reset(EpsilonGreedyPruner(), n)
    k = kept_count(n, r)  # ceil((1 - r) N), robust to float round-off
    n_top = math.ceil((1 - eps) * k)
    top = set(torch.argsort(mu, descending=True)[:n_top].tolist())
    plan = p.plan(2, table(ema=mu), {"prune_ratio": r, "epsilon": eps})
    kept = plan.indices.tolist()
    assert len(kept) == len(set(kept)) == k
    assert top <= set(kept)
    assert len(set(kept) - top) == math.floor(eps * k)


def test_epsilon_greedy_explores_uniformly_over_the_rest():
    n, trials = 200, 400
    mu = torch.linspace(0, 1, n)  # sample i has rank n - 1 - i
    p = reset(EpsilonGreedyPruner(), n)
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[p.plan(1, table(ema=mu), {"prune_ratio": 0.5, "epsilon": 0.2}).indices] += 1
    # K = 100: top 80 always; 20 of the other 120 uniformly (1/6 each)
    assert torch.all(counts[120:] == trials)
    freq = counts[:120] / trials
    assert abs(float(freq.mean()) - 20 / 120) < 0.01
    assert abs(float(freq[:60].mean() - freq[60:].mean())) < 0.04  # lowest scores as likely as middling ones


def test_ucb_ranks_by_mean_plus_c_sqrt_var():
    n = 400
    mu, v = skewed_losses(n, 3), skewed_losses(n, 4)
    p = reset(UCBPruner(), n)
    for c in (0.0, 1.0, 3.0):
        expected = set(torch.topk(mu + c * v.sqrt(), kept_count(n, 0.6)).indices.tolist())
        plan = p.plan(1, table(ema=mu, ema_var=v), {"prune_ratio": 0.6, "c": c})
        assert set(plan.indices.tolist()) == expected
    # c decides between a certain mid-loss sample and an uncertain low-loss one
    mu2, v2 = torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 0.0])
    keep = lambda c: set(p.plan(1, table(ema=mu2, ema_var=v2), {"prune_ratio": 0.75, "c": c}).indices.tolist())
    reset(p, 4)
    assert keep(0.0) == {0} and keep(1.0) == {1}


def test_raju_pruners_rank_by_score_table_ema_rate_default():
    assert ScoreTable(3).ema_rate == 0.2  # Raju's a (METHODS.md)
    from prunegym.training import RunConfig

    assert RunConfig().ema_rate == 0.2  # the engine's tables use it too
    # Two epochs of losses on a default table: mu = 0.8 * first + 0.2 * second, v = 0.2 * (second - first)^2.
    # The orders by mu, by the latest loss and by mu + sqrt(v) differ, so each pruner's pick tells which it used.
    first = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0, 0.0])
    second = torch.tensor([0.0, 0.0, 0.0, 0.0, 9.0, 4.0])
    t = ScoreTable(6)
    everyone, correct = torch.arange(6), torch.zeros(6, dtype=torch.bool)
    t.update(everyone, first, correct, epoch=0)
    t.update(everyone, second, correct, epoch=1)
    assert torch.allclose(t.ema, 0.8 * first + 0.2 * second) and torch.allclose(t.ema_var, 0.2 * (second - first) ** 2)
    keep = lambda p, action: set(reset(p, 6).plan(2, t, action).indices.tolist())  # noqa: E731
    # mu = [3.2, 2.4, 1.6, 0.8, 1.8, 0.8]: the top 2 by mu are {0, 1} (by the latest loss they would be {4, 5})
    assert keep(EpsilonGreedyPruner(), {"prune_ratio": 4 / 6, "epsilon": 0.0}) == {0, 1}
    assert keep(UCBPruner(), {"prune_ratio": 4 / 6, "c": 0.0}) == {0, 1}
    # mu + sqrt(v) = [4.99, 3.74, 2.49, 1.25, 5.82, 2.59]: with c = 1 the uncertain sample 4 comes first
    assert keep(UCBPruner(), {"prune_ratio": 4 / 6, "c": 1.0}) == {4, 0}


# -- SwDPP ---------------------------------------------------------------------------------------------------------
def swdpp_with_scores(score: torch.Tensor, seed: int = 0, **kwargs) -> SwDPPPruner:
    p = reset(SwDPPPruner(**kwargs), score.numel(), seed)
    n = score.numel()
    p.update(SimpleNamespace(indices=torch.arange(n), losses=score, mixed=torch.zeros(n, dtype=torch.bool)), None)
    return p


def test_swdpp_update_is_an_ema_of_unmixed_losses():
    p = reset(SwDPPPruner(), 4)
    res = lambda losses, mixed: SimpleNamespace(
        indices=torch.tensor([0, 1, 2]),
        losses=torch.tensor(losses),
        mixed=torch.tensor(mixed),
        correct=torch.ones(3, dtype=torch.bool),
    )
    p.update(res([1.0, 2.0, 3.0], [False, False, True]), None)
    assert p.score.tolist() == pytest.approx([1.0, 2.0, 0.0, 0.0])  # first observation sets it; mixed skipped
    p.update(res([2.0, 0.0, 5.0], [False, True, False]), None)
    assert p.score.tolist() == pytest.approx([0.7 * 1 + 0.3 * 2, 2.0, 5.0, 0.0])


def test_swdpp_warmup_full_then_exact_count():
    n = 1000
    p = swdpp_with_scores(skewed_losses(n))
    assert sorted(p.plan(0, None, full_action(p, 0.3)).indices.tolist()) == list(range(n))
    plan = p.plan(1, None, full_action(p, 0.3))
    assert plan.indices.numel() == len(set(plan.indices.tolist())) == kept_count(n, 0.3)
    assert plan.weights is None and plan.claimed_prune_ratio == pytest.approx(0.3)


def test_swdpp_inclusion_rises_with_score_with_a_floor():
    n, trials, r = 400, 300, 0.7
    score = torch.linspace(0, 3, n)
    p = swdpp_with_scores(score)
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[p.plan(1, None, {"prune_ratio": r, "floor": 0.2, "mix_prob": 0.0}).indices] += 1
    freq = (counts / trials).view(8, -1).mean(1)  # by score octile, low to high
    assert torch.all(freq[1:] > freq[:-1])
    assert float(freq[-1]) > 0.6
    # every sample keeps a floor probability: at least lam * K / N in expectation
    q = sampling_distribution(score, 0.2)
    assert float(q.min()) >= 0.2 / n
    assert float((counts / trials).min()) >= 0.5 * 0.2 * kept_count(n, r) / n
    # without the floor, the low-score samples are almost never drawn
    p0 = swdpp_with_scores(score)
    c0 = torch.zeros(n)
    for _ in range(100):
        c0[p0.plan(1, None, {"prune_ratio": r, "floor": 0.0, "mix_prob": 0.0}).indices] += 1
    assert float(c0[:50].mean()) / 100 < 0.5 * float(counts[:50].mean()) / trials


@pytest.mark.parametrize("m", [0.0, 0.3, 0.8])
def test_swdpp_mixup_rate_partners_and_shares(m):
    n = 4000
    p = swdpp_with_scores(skewed_losses(n))
    plan = p.plan(1, None, {"prune_ratio": 0.5, "floor": 0.2, "mix_prob": m})
    if m == 0.0:
        assert plan.mixup is None
        return
    kept = set(plan.indices.tolist())
    mixed = plan.mixup.lam < 1
    assert abs(float(mixed.float().mean()) - m) < 0.03
    partners = plan.mixup.partner[mixed].tolist()
    assert not kept & set(partners)  # partners come from the not-kept samples
    assert torch.equal(plan.mixup.partner[~mixed], plan.indices[~mixed])
    assert torch.all(plan.mixup.lam[~mixed] == 1)
    lam = plan.mixup.lam[mixed]
    assert abs(float(lam.mean()) - 0.5) < 0.03 and abs(float(lam.var()) - 1 / 12) < 0.01  # U(0, 1)


def test_swdpp_importance_weights_optional_and_clipped():
    n = 1000
    score = skewed_losses(n) * 3
    assert swdpp_with_scores(score).plan(1, None, {"prune_ratio": 0.5, "floor": 0.2, "mix_prob": 0}).weights is None
    p = swdpp_with_scores(score, importance_weights=True, weight_clip=3.0)
    plan = p.plan(1, None, {"prune_ratio": 0.5, "floor": 0.2, "mix_prob": 0})
    q = sampling_distribution(p.score, 0.2)
    expected = (1 / (kept_count(n, 0.5) * q[plan.indices])).clamp(max=3.0)
    torch.testing.assert_close(plan.weights, expected)
    assert float(plan.weights.max()) == pytest.approx(3.0)


def test_swdpp_ratio_zero_full_and_unmixed():
    p = swdpp_with_scores(skewed_losses(100))
    plan = p.plan(4, None, {"prune_ratio": 0.0, "floor": 0.2, "mix_prob": 0.5})
    assert sorted(plan.indices.tolist()) == list(range(100)) and plan.mixup is None


# -- every pruner: same seed, same selections ------------------------------------------------------------------
def plans_of(name: str, seed: int, n: int = 600, epochs: int = 3):
    p = make_pruner(name)
    p.reset(n, epochs, "cpu", gen(seed))
    scores = table(loss=skewed_losses(n), ema=skewed_losses(n, 2), ema_var=skewed_losses(n, 3))
    scores.labels.copy_(torch.arange(n) % 4)  # four classes, for class-aware pruners (RCAP)
    out = []
    for e in range(epochs):
        plan = p.plan(e, scores, full_action(p, 0.4))
        rec = [plan.indices.clone(), plan.weights]
        if plan.mixup is not None:
            rec += [plan.mixup.partner, plan.mixup.lam]
        if plan.selector is not None:
            feats = torch.randn(96, 8, 4, 4, generator=gen(e))
            rec += [plan.selector(feats, plan.indices[:96]) for _ in range(3)]
        out.append(rec)
        losses = skewed_losses(plan.indices.numel(), 10 + e)
        p.update(
            SimpleNamespace(
                indices=plan.indices,
                losses=losses,
                correct=losses < 1,
                mixed=torch.zeros(plan.indices.numel(), dtype=torch.bool),
            ),
            scores,
        )
    return out


def same(a, b) -> bool:
    return all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for ra, rb in zip(a, b)
        for x, y in zip(ra, rb)
    )


@pytest.mark.parametrize("name", sorted(PRUNERS))
def test_same_seed_same_selections(name):
    assert same(plans_of(name, 7), plans_of(name, 7))
    assert not same(plans_of(name, 7), plans_of(name, 8))
