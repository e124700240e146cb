"""OrderDP (Jin et al., ICLR 2026) against a re-implementation of the official rule (shengze-xu/OrderDP,
``cifar/orderDP/orderDP.py``: ``OrderDP.__init__`` and ``OrderDP.prune``), written here from the official
code's logic (numpy's subset draw, ``torch.topk`` inside it), on crafted scores: the subset drawn from the run's
generator, the top-K inside it, ties, the exact realised ratio, no reweighting, the official ``(s, q)`` on a
grid, the keep distribution against the exact inclusion probabilities (the code's commented-out
``compute_expression``), determinism, refusals, the schedule, the sampler and a whole episode."""

from __future__ import annotations

import math
import random
from math import comb

import numpy as np
import pytest
import torch

from prunegym.baselines import PruningSampler, make_policy
from prunegym.baselines.base import DEFAULT_MAX_PRUNE_RATIO, kept_count
from prunegym.baselines.orderdp import OrderDPPolicy, OrderDPPruner, subset_size
from prunegym.baselines.registry import POLICIES, PRUNERS
from prunegym.envs import PruningEnv
from prunegym.training import ScoreTable

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def registered(monkeypatch):
    """``orderdp`` in the registries (the one line each that ``baselines/registry.py`` will hold)."""
    monkeypatch.setitem(PRUNERS, "orderdp", OrderDPPruner)
    monkeypatch.setitem(POLICIES, "orderdp", OrderDPPolicy)


# -- the official rule, re-implemented from its logic ---------------------------------------------------------
def official_sizes(n: int, random_len_ratio: float, top_q_ratio: float) -> tuple[int, int]:
    """``OrderDP.__init__``: ``random_len = int(a * N)``, ``top_q = int(b * random_len)``."""
    s = int(random_len_ratio * n)
    return s, int(top_q_ratio * s)


def official_top_q(scores: torch.Tensor, subset: np.ndarray, q: int) -> np.ndarray:
    """``OrderDP.prune`` after the draw: the whole subset when ``q = s``, else its ``torch.topk`` largest."""
    if q == len(subset):
        return subset
    top = torch.topk(scores[torch.as_tensor(subset)], q, dim=0, largest=True, sorted=False)[1]
    return subset[top.numpy()]


def official_prune(scores: torch.Tensor, a: float, b: float, rng: np.random.RandomState) -> np.ndarray:
    """``OrderDP.prune``: ``choice(N, s, replace=False)`` then the top ``q`` (numpy's ``RandomState`` here,
    where the official code reseeds the global one)."""
    s, q = official_sizes(len(scores), a, b)
    return official_top_q(scores, rng.choice(len(scores), s, replace=False), q)


def official_inclusion(n: int, s: int, q: int, j: int) -> float:
    """The code's commented-out ``compute_expression(n, s, j, q)``: the probability that the sample ranked
    ``j``-th by loss (1 = largest) is kept."""
    lo = max(1, s - n + j)
    num = sum(comb(j - 1, l - 1) * comb(n - j, s - l) for l in range(lo, min(q, j) + 1))
    den = sum(comb(j - 1, l - 1) * comb(n - j, s - l) for l in range(lo, min(s, j) + 1))
    return comb(n - 1, s - 1) / comb(n, s) * num / den


# -- helpers ---------------------------------------------------------------------------------------------------
def table(loss, observed: bool = True) -> ScoreTable:
    """A score table whose samples were all trained (``observed``) with these latest losses."""
    loss = torch.as_tensor(loss, dtype=torch.float32)
    t = ScoreTable(loss.numel())
    t.loss.copy_(loss)
    t.observed.fill_(observed)
    return t


def orderdp(n: int, seed: int = 0) -> OrderDPPruner:
    p = OrderDPPruner()
    p.reset(n, 10, "cpu", torch.Generator().manual_seed(seed))
    return p


def score_vector(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + n)
    if kind == "skewed":
        return -torch.rand(n, generator=g).log()  # distinct
    if kind == "ties":
        return torch.randint(0, 4, (n,), generator=g).float()
    return torch.full((n,), 3.0)  # all equal (every epoch 0)


# -- the rule on crafted scores ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n,r,b,s,k",
    [
        (10, 0.7, 0.5, 6, 3),
        (600, 0.7, 0.375, 480, 180),  # the README's CIFAR setting a = 0.8, b = 0.375 at N = 600
        (50000, 0.7, 0.375, 40000, 15000),
        (100, 0.7, 0.3, 100, 30),  # 30 / 0.3 = 100.00000000000001: 100, not 101
        (7, 0.5, 0.6, 7, 4),  # ceil(4 / 0.6) = 7
        (10, 0.5, 1.0, 5, 5),  # b = 1: uniform random pruning
        (10, 0.5, 0.1, 10, 5),  # b < 1 - r: the whole set, greedy top K
        (100, 0.7, 0.45, 67, 30),  # ceil(66.67)
    ],
)
def test_subset_and_kept_counts(n, r, b, s, k):
    assert kept_count(n, r) == k and subset_size(n, k, b) == s
    p = orderdp(n)
    plan = p.plan(1, table(score_vector("skewed", n)), {"prune_ratio": r, "top_q_ratio": b})
    assert p.last_subset.numel() == s and plan.indices.numel() == k


def test_the_subset_comes_from_the_generator_and_the_top_k_inside_it_are_kept():
    """N = 20 distinct losses, r = 0.5 (K = 10), b = 0.625 (s = 16): the subset is the first 16 of the
    generator's ``randperm(20)``, the kept ones its 10 largest losses, whatever their rank among all 20."""
    loss = score_vector("skewed", 20)
    p = orderdp(20, seed=7)
    plan = p.plan(1, table(loss), {"prune_ratio": 0.5, "top_q_ratio": 0.625})
    subset = torch.randperm(20, generator=torch.Generator().manual_seed(7))[:16]
    assert torch.equal(p.last_subset, subset)
    expected = {int(i) for i in subset if (loss[subset] > loss[i]).sum() < 10}
    assert set(plan.indices.tolist()) == expected and len(expected) == 10
    left_out = set(range(20)) - set(subset.tolist())
    assert max(loss[sorted(left_out)]) > min(loss[sorted(expected)])  # not the global top 10


def test_hand_made_losses_keep_the_largest_of_the_subset():
    """Sample i has loss i: the kept ones are the K largest indices of the subset."""
    p = orderdp(12, seed=3)
    for _ in range(20):
        plan = p.plan(1, table(torch.arange(12.0)), {"prune_ratio": 0.75, "top_q_ratio": 0.5})  # K = 3, s = 6
        assert sorted(plan.indices.tolist()) == sorted(p.last_subset.tolist())[-3:]


def test_a_sample_never_trained_scores_the_official_start_of_3():
    """The official code starts every score at 3 and overwrites it when a sample is trained: inside the subset
    the untrained samples (0 and 1) outrank trained ones with loss 1, and sample 2 (loss 5) outranks them."""
    t = table(torch.full((12,), 1.0))
    t.observed[[0, 1]] = False  # never trained: their recorded loss, 0, is no loss of theirs
    t.loss[2] = 5.0
    both = 0
    for seed in range(20):
        p = orderdp(12, seed=seed)
        kept = p.plan(1, t, {"prune_ratio": 0.75, "top_q_ratio": 1.0 / 3.0}).indices.tolist()  # K = 3 of 9
        drawn = p.last_subset.tolist()
        assert [i for i in (2, 0, 1) if i in drawn] == [i for i in (2, 0, 1) if i in kept]
        both += {0, 1} <= set(drawn)
    assert both > 0  # some subsets hold both untrained samples, and they are kept


def test_ties_go_to_the_earlier_drawn_and_are_uniform():
    """All equal: the first K of the subset in draw order. Losses 5, 1, 1, 1, 1, 0 at K = 3 with b <= 1 - r
    (the subset is all six): sample 0, then two of the four tied, each kept half the time."""
    p = orderdp(30, seed=1)
    plan = p.plan(0, table(score_vector("equal", 30)), {"prune_ratio": 0.5, "top_q_ratio": 0.75})
    assert set(plan.indices.tolist()) == set(p.last_subset[:15].tolist())
    t = table([5.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    p = orderdp(6, seed=2)
    counts = np.zeros(6)
    reps = 2000
    for _ in range(reps):
        kept = p.plan(1, t, {"prune_ratio": 0.5, "top_q_ratio": 0.5}).indices
        assert p.last_subset.numel() == 6
        counts[kept.numpy()] += 1
    assert counts[0] == reps and counts[5] == 0
    assert np.abs(counts[1:5] / reps - 0.5).max() < 0.05


@pytest.mark.parametrize("n", [1, 3, 10, 97, 1000])
def test_the_realised_ratio_is_exact_and_nothing_is_reweighted(n):
    scores = table(score_vector("ties", n))
    p = orderdp(n)
    for r in (0.001, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.999):
        for b in (0.1, 0.375, 0.8, 1.0):
            plan = p.plan(1, scores, {"prune_ratio": r, "top_q_ratio": b})
            idx = plan.indices.tolist()
            assert len(idx) == kept_count(n, r) == len(set(idx)), (n, r, b)
            assert set(idx) <= set(p.last_subset.tolist())
            assert plan.weights is None and plan.claimed_prune_ratio == r


def test_ratio_zero_is_the_full_data():
    plan = orderdp(50).plan(3, table(score_vector("skewed", 50)), {"prune_ratio": 0.0, "top_q_ratio": 0.375})
    assert sorted(plan.indices.tolist()) == list(range(50)) and plan.claimed_prune_ratio == 0.0


def test_a_missing_knob_takes_its_default():
    p, q = orderdp(100, 4), orderdp(100, 4)
    t = table(score_vector("skewed", 100))
    a = p.plan(1, t, {"prune_ratio": 0.7}).indices
    assert torch.equal(a, q.plan(1, t, {"prune_ratio": 0.7, "top_q_ratio": 0.375}).indices)
    assert p.last_subset.numel() == 80


# -- against the official rule -------------------------------------------------------------------------------------
GRID_N = [1, 2, 5, 7, 10, 33, 100, 1000]
GRID_A = [0.1, 0.3, 0.5, 0.75, 0.8, 1.0]
GRID_B = [0.1, 0.375, 0.5, 0.8, 0.85, 0.9, 1.0]


@pytest.mark.parametrize("kind", ["skewed", "ties", "equal"])
def test_sizes_and_selection_match_the_official_rule_on_a_grid(kind):
    """For each official ``(a, b)``: ``(r, b') = (1 - q / N, q / s)`` gives the official ``s`` and ``q``, and the
    kept set is the official top ``q`` of our subset (the same losses where ties leave the members open)."""
    for n in GRID_N:
        scores = score_vector(kind, n)
        t = table(scores)
        for a in GRID_A:
            for b in GRID_B:
                s, q = official_sizes(n, a, b)
                if q == 0:
                    continue  # the official code keeps nothing; r = 1 is out of every env's range
                p = orderdp(n, seed=n)
                plan = p.plan(1, t, {"prune_ratio": 1 - q / n, "top_q_ratio": q / s})
                case = f"n={n} a={a} b={b} {kind}"
                if q == n:  # r = 0: the full data, no subset drawn
                    assert sorted(plan.indices.tolist()) == list(range(n)) and p.last_subset.numel() == 0, case
                    continue
                assert p.last_subset.numel() == s and plan.indices.numel() == q, case
                theirs = official_top_q(scores, p.last_subset.numpy(), q)
                ours = plan.indices.numpy()
                if kind == "skewed":
                    assert set(ours.tolist()) == set(theirs.tolist()), case
                else:
                    assert sorted(scores[ours].tolist()) == sorted(scores[theirs].tolist()), case


def test_the_official_truncation_keeps_fewer_than_the_ratio_ours_keeps_exactly():
    """N = 10, a = 0.75, b = 0.8: the official ``int(7.5) = 7``, ``int(5.6) = 5`` keeps 5 where a * b * N = 6;
    r = 1 - a * b = 0.4 keeps 6 of a subset of ceil(6 / 0.8) = 8 here."""
    assert official_sizes(10, 0.75, 0.8) == (7, 5)
    p = orderdp(10)
    plan = p.plan(1, table(score_vector("skewed", 10)), {"prune_ratio": 1 - 0.75 * 0.8, "top_q_ratio": 0.8})
    assert plan.indices.numel() == 6 and p.last_subset.numel() == 8


def test_the_keep_distribution_is_the_official_one():
    """N = 8 distinct losses, s = 5, q = 2 (a = 0.625, b = 0.4): the frequency with which the j-th largest loss
    is kept, for the official draw (numpy + ``torch.topk``) and ours, against ``compute_expression``."""
    n, a, b = 8, 0.625, 0.4
    s, q = official_sizes(n, a, b)
    assert (s, q) == (5, 2)
    scores = torch.tensor([0.3, 2.0, 1.1, 0.7, 5.0, 0.1, 1.6, 0.9])
    rank = torch.argsort(torch.argsort(scores, descending=True)).numpy()  # 0 = the largest
    exact = np.array([official_inclusion(n, s, q, j + 1) for j in range(n)])
    assert exact.sum() == pytest.approx(q) and exact[0] == pytest.approx(s / n) and exact[-1] == 0.0
    reps = 4000
    rng = np.random.RandomState(0)
    theirs, ours = np.zeros(n), np.zeros(n)
    for _ in range(reps):
        theirs[rank[official_prune(scores, a, b, rng)]] += 1
    t, p = table(scores), orderdp(n, seed=0)
    for _ in range(reps):
        ours[rank[p.plan(1, t, {"prune_ratio": 1 - q / n, "top_q_ratio": q / s}).indices.numpy()]] += 1
    assert np.abs(theirs / reps - exact).max() < 0.03
    assert np.abs(ours / reps - exact).max() < 0.03


# -- determinism and the global RNGs -------------------------------------------------------------------------------
def test_same_generator_same_plan_and_no_global_rng():
    t = table(score_vector("ties", 300))
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    act = {"prune_ratio": 0.6, "top_q_ratio": 0.5}
    plans = [orderdp(300, s).plan(1, t, act) for s in (5, 5, 6)]
    assert torch.equal(plans[0].indices, plans[1].indices) and not torch.equal(plans[0].indices, plans[2].indices)
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


# -- refusals --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", [0.0, -0.1, 1.5, math.nan])
def test_bad_top_q_ratio_is_a_one_line_error(b):
    with pytest.raises(ValueError) as e:
        orderdp(10).plan(1, table([1.0] * 10), {"prune_ratio": 0.5, "top_q_ratio": b})
    assert str(e.value) == f"top_q_ratio={b!r} is out of range (0, 1]"


@pytest.mark.parametrize("r", [-0.1, 1.5, math.nan])
def test_bad_prune_ratio_is_a_one_line_error(r):
    with pytest.raises(ValueError) as e:
        orderdp(10).plan(1, table([1.0] * 10), {"prune_ratio": r, "top_q_ratio": 0.5})
    assert str(e.value) == f"prune_ratio={r!r} is out of range [0, 1]"


def test_bad_policy_values_are_one_line_errors(registered):
    env = PruningEnv(task="synthetic-mlp", pruner="orderdp", epochs=4)  # no run until reset
    with pytest.raises(ValueError) as e:
        make_policy("orderdp", env, top_q_ratio=0.05)
    assert str(e.value) == "top_q_ratio=0.05 is out of range [0.1, 1.0] (the 'orderdp' pruner's knob)"
    with pytest.raises(ValueError, match=r"^prune_ratio=0\.95 is out of range \[0, 0\.9\]$"):
        make_policy("orderdp", env, prune_ratio=0.95)
    with pytest.raises(ValueError, match="^policy 'orderdp' has no hyperparameter"):
        make_policy("orderdp", env, delta=0.875)  # no annealing
    with pytest.raises(TypeError):
        OrderDPPruner(warmup_epochs=1)  # type: ignore[call-arg]  # no warm-up either


# -- schedule, declarations, sampler and a whole episode --------------------------------------------------------
def test_policy_prunes_every_epoch_at_the_published_defaults(registered):
    env = PruningEnv(task="synthetic-mlp", pruner="orderdp", epochs=6)
    policy = make_policy("orderdp", env)
    assert policy.hparams == {"prune_ratio": 0.7, "top_q_ratio": 0.375}
    assert [policy.schedule(e) for e in range(6)] == [{"prune_ratio": 0.7, "top_q_ratio": 0.375}] * 6
    assert [k.name for k in env.codec.knobs] == ["top_q_ratio"]
    assert OrderDPPolicy.calibration_knob(OrderDPPruner.knobs) == ("prune_ratio", DEFAULT_MAX_PRUNE_RATIO, 0.0, False)
    assert OrderDPPolicy.search_space(OrderDPPruner.knobs) == {"top_q_ratio": (0.1, 1.0, False)}
    assert OrderDPPolicy.sampler_unfit is None and not OrderDPPolicy.requires_budget


def test_runs_as_a_sampler_and_meets_a_budget(registered):
    s = PruningSampler("orderdp", num_samples=200, epochs=3, seed=0)
    for e in range(3):
        s.set_epoch(e)
        idx = torch.tensor(list(s))
        assert idx.numel() == kept_count(200, 0.7) == len(set(idx.tolist()))
        assert torch.all(s.weights(idx) == 1)
        s.update(idx, idx.float())
    s.end_epoch()
    assert s.kept_fractions == [0.3] * 3
    b = PruningSampler("orderdp", num_samples=200, epochs=4, seed=0, budget=0.5)
    for e in range(4):
        b.set_epoch(e)
        idx = torch.tensor(list(b))
        b.update(idx, torch.rand(idx.numel(), generator=torch.Generator().manual_seed(e)))
    b.end_epoch()
    assert b.budget_spent == pytest.approx(0.5, rel=0.01)


def test_episode_through_the_env(registered):
    env = PruningEnv("synthetic-mlp", pruner="orderdp", epochs=3, train_size=600, val_size=200, test_size=200)
    policy = make_policy("orderdp", env)
    pruner = env.pruner
    seen, plan = [], pruner.plan

    def spy(e, scores, action):
        out = plan(e, scores, action)
        score = torch.where(scores.observed, scores.loss, torch.full_like(scores.loss, 3.0))  # the official start
        seen.append((score, pruner.last_subset.clone(), out))
        return out

    pruner.plan = spy  # type: ignore[method-assign]
    obs, _ = env.reset(seed=0)
    infos, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    env.close()
    k = kept_count(600, 0.7)
    assert len(seen) == 3
    for e, (loss, subset, pl) in enumerate(seen):
        assert subset.numel() == 480 and pl.indices.numel() == k == 180
        top = subset[torch.argsort(loss[subset], descending=True, stable=True)[:k]]
        assert set(pl.indices.tolist()) == set(top.tolist()), e
    assert torch.all(seen[0][0] == 3) and (seen[1][0] == 3).sum() == 600 - k  # epoch 0: ties; then untrained: 3
    assert [i["claimed_prune_ratio"] for i in infos] == [0.7] * 3
    assert [i["kept_fraction"] for i in infos] == [0.3] * 3
    assert infos[-1]["compute_fraction_total"] == pytest.approx(0.3)
    assert all(math.isfinite(i["val_accuracy"]) for i in infos)
