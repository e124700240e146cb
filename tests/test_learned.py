"""The ``learned`` pruner (issue 7): its knobs reproduce the kept sets of uniform, epsilon-greedy, UCB and
InfoBatch on hand-made score tables; its inclusion probabilities and importance weights; seeding; the new
observation features; and an end-to-end synthetic episode under SB3's env checker."""

from __future__ import annotations

import math
import random
import warnings

import gymnasium
import numpy as np
import pytest
import torch

import prunegym.envs  # noqa: F401  (registers the ids)
from prunegym.baselines import (
    PRUNERS,
    EpsilonGreedyPruner,
    InfoBatchPruner,
    UCBPruner,
    kept_count,
    make_pruner,
)
from prunegym.baselines.learned import (
    LearnedPruner,
    inclusion_probabilities,
    mapped_action,
    sharpness_beta,
)
from prunegym.envs import FEATURE_DOCS, FEATURE_NAMES, ActionCodec, PruningEnv
from prunegym.envs.features import StepStats, _slope
from prunegym.training import ScoreTable

NEW_FEATURES = ("val_accuracy_rel", "val_accuracy_trend", "train_val_gap", "score_age", "loss_noise")


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def skewed(n: int, seed: int = 0) -> torch.Tensor:
    """Distinct right-skewed 'losses' (exponential, like per-sample cross-entropy)."""
    return -torch.log(torch.rand(n, generator=gen(1000 + seed), dtype=torch.float64)).float() + 1e-3


def table(loss, ema=None, ema_var=None) -> ScoreTable:
    t = ScoreTable(len(loss))
    t.loss[:] = loss
    t.ema[:] = loss if ema is None else ema
    if ema_var is not None:
        t.ema_var[:] = ema_var
    t.observed[:] = True
    return t


def learned(n: int, seed: int = 0, **kw) -> LearnedPruner:
    p = LearnedPruner(**kw)
    p.reset(n, 10, "cpu", gen(seed))
    return p


def act(r: float, **knobs) -> dict:
    return {"prune_ratio": r, **knobs}


def via_float32(action: dict, max_prune_ratio: float = 0.9) -> dict:
    """``action`` as the env sees it: encoded, cast to float32, decoded (round-off included)."""
    codec = ActionCodec(max_prune_ratio, LearnedPruner.knobs)
    return codec.decode(np.asarray(codec.encode(**action), dtype=np.float32))


def kept_sets(p, scores, action, draws: int, epoch: int = 1):
    return [p.plan(epoch, scores, action) for _ in range(draws)]


# -- registry, knobs, warm-up ------------------------------------------------------------------------------------
def test_registered_with_three_knobs_and_validated():
    assert PRUNERS["learned"] is LearnedPruner and make_pruner("learned").name == "learned"
    assert [k.name for k in LearnedPruner.knobs] == ["sharpness", "rescale", "greedy"]
    assert [(k.low, k.high, k.default) for k in LearnedPruner.knobs] == [(-1, 1, 0), (0, 1, 0), (0, 1, 0)]
    for bad, message in (
        ({"score": "forgetting"}, r"score='forgetting'; allowed: ema, loss"),
        ({"optimism": -1.0}, r"optimism=-1.0 must be a finite number >= 0"),
        ({"max_weight": 0.5}, r"max_weight=0.5 must be a finite number >= 1"),
        ({"warmup_epochs": -1}, r"warmup_epochs=-1 must be an int >= 0"),
        ({"beta_scale": 0.0}, r"beta_scale=0.0 must be a finite number > 0"),
    ):
        with pytest.raises(ValueError, match=message):
            make_pruner("learned", **bad)
    assert sharpness_beta(0.0) == 0.0 and sharpness_beta(0.5) == pytest.approx(4.0)
    assert sharpness_beta(1.0) == math.inf and sharpness_beta(-1.0) == -math.inf


def test_warmup_and_zero_ratio_keep_everything():
    n = 300
    s = table(skewed(n))
    p = learned(n)
    for epoch, action in ((0, act(0.5, sharpness=1.0, rescale=1.0, greedy=0.5)), (3, act(0.0, rescale=1.0))):
        plan = p.plan(epoch, s, action)
        assert sorted(plan.indices.tolist()) == list(range(n)) and plan.weights is None
    plan = learned(n, warmup_epochs=0).plan(0, s, act(0.5))
    assert plan.indices.numel() == kept_count(n, 0.5) and plan.claimed_prune_ratio == 0.5


# -- mappings ----------------------------------------------------------------------------------------------------
def test_uniform_mapping_matches_raju_uniform_in_law():
    n, r, draws = 400, 0.5, 300
    loss = skewed(n)
    s = table(loss)
    k = kept_count(n, r)
    p = learned(n, 3)
    counts = torch.zeros(n)
    means = []
    for plan in kept_sets(p, s, via_float32(mapped_action("uniform", r)), draws):
        assert plan.indices.numel() == k == plan.indices.unique().numel() and plan.weights is None
        counts[plan.indices] += 1
        means.append(float(loss[plan.indices].mean()))
    freq = counts / draws
    assert float((freq - k / n).abs().max()) < 0.12  # ~4 sigma of Binomial(300, 0.5) / 300
    pop = float(loss.mean())
    assert np.mean(means) == pytest.approx(pop, rel=0.01)  # kept-loss mean = population mean in expectation
    # ... and the kept-loss distribution is the population's: deciles of the pooled kept losses
    pooled = torch.cat([loss[pl.indices] for pl in kept_sets(p, s, act(r), 50)])
    qs = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float32)
    torch.testing.assert_close(torch.quantile(pooled, qs), torch.quantile(loss, qs), rtol=0.05, atol=0.01)
    # rescale = 1: Horvitz-Thompson weights N / K, i.e. uniform_rescaled's 1 / (1 - r)
    plan = p.plan(1, s, via_float32(mapped_action("uniform_rescaled", 0.3)))
    assert torch.allclose(plan.weights, torch.full_like(plan.weights, n / kept_count(n, 0.3)))
    assert n / kept_count(n, 0.3) == pytest.approx(1 / 0.7, rel=1e-2)


def test_keep_hardest_and_easiest_at_the_ends():
    n = 1000
    loss = skewed(n)
    s = table(loss)
    for r in (0.3, 0.5, 0.8):
        k = kept_count(n, r)
        top = set(torch.topk(loss, k).indices.tolist())
        bottom = set(torch.topk(-loss, k).indices.tolist())
        p = learned(n, 1)
        assert set(p.plan(1, s, via_float32(act(r, sharpness=1.0))).indices.tolist()) == top  # exact greedy
        assert set(p.plan(1, s, via_float32(act(r, sharpness=-1.0))).indices.tolist()) == bottom
        for _ in range(5):
            near = set(p.plan(1, s, act(r, sharpness=0.99)).indices.tolist())
            assert len(near & top) / k > 0.95
            near = set(p.plan(1, s, act(r, sharpness=-0.99)).indices.tolist())
            assert len(near & bottom) / k > 0.95
    # the kept-loss mean moves monotonically from the easiest to the hardest through uniform
    p = learned(n, 2)
    grid = (-1.0, -0.9, -0.5, 0.0, 0.5, 0.9, 1.0)
    means = [
        np.mean([float(loss[pl.indices].mean()) for pl in kept_sets(p, s, act(0.5, sharpness=v), 20)]) for v in grid
    ]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_ucb_mapping_is_ucbs_kept_set():
    n = 800
    mu, var = skewed(n, 1), skewed(n, 2) * 0.3
    s = table(skewed(n, 3), ema=mu, ema_var=var)
    for c in (0.0, 1.0, 2.5):
        ucb = UCBPruner()
        ucb.reset(n, 10, "cpu", gen(0))
        for r in (0.3, 0.7):
            ref = set(ucb.select(s, kept_count(n, r), {"c": c}).tolist())
            p = learned(n, 5, optimism=c)
            action = via_float32(mapped_action("ucb", r))
            plan = p.plan(1, s, action)
            assert set(plan.indices.tolist()) == ref and plan.weights is None
            # greedy = 1 (epsilon-greedy with eps = 0) gives the same set
            assert set(p.plan(1, s, via_float32(act(r, greedy=1.0))).indices.tolist()) == ref


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_epsilon_greedy_mapping_matches_raju_epsilon_greedy(eps):
    n, r, draws = 500, 0.6, 200
    mu = skewed(n, 4)
    s = table(skewed(n, 5), ema=mu)
    k = kept_count(n, r)
    n_top = k - math.floor(eps * k + 1e-9)
    order = torch.argsort(mu, descending=True)
    top, rest = set(order[:n_top].tolist()), order[n_top:]
    top_k = set(order[:k].tolist())
    ref = EpsilonGreedyPruner()
    ref.reset(n, 10, "cpu", gen(9))
    p = learned(n, 6)
    action = via_float32(mapped_action("epsilon_greedy", r, epsilon=eps))
    counts = torch.zeros(n)
    shares = []
    for _ in range(draws):
        kept = p.plan(1, s, action).indices
        theirs = ref.plan(1, s, {"prune_ratio": r, "epsilon": eps}).indices
        assert kept.numel() == theirs.numel() == k
        assert top <= set(kept.tolist()) and top <= set(theirs.tolist())  # the same greedy part
        counts[kept] += 1
        shares.append(len(set(kept.tolist()) & top_k) / k)
    assert min(shares) >= 1 - eps - 1e-9  # at least (1 - eps) of the kept set is top-by-mu
    freq = counts[rest] / draws  # the random part: uniform over the rest, like EpsilonGreedyPruner's
    expected = (k - n_top) / rest.numel()
    assert float(freq.mean()) == pytest.approx(expected, rel=1e-6)
    assert float((freq - expected).abs().max()) < 4.5 * math.sqrt(expected * (1 - expected) / draws) + 0.01


def test_infobatch_mapping_reproduces_infobatchs_counts_and_weights():
    n, draws = 1000, 150
    loss = skewed(n, 7)
    s = table(loss, ema=skewed(n, 8))  # ema deliberately different: score="loss" must use the latest loss
    d1 = loss < loss.mean()
    n1 = int(d1.sum())
    d2 = set(torch.nonzero(~d1).view(-1).tolist())
    for r in (0.3, 0.5, 0.8):
        k1 = int(min(1.0, max(0.1, 1.0 - r)) * n1)  # the official count (issue 11: was floor((1 - r) |D1| + 1e-9))
        ib = InfoBatchPruner()
        ib.reset(n, 10, "cpu", gen(0))
        ref = ib.plan(1, s, {"prune_ratio": r})
        action = via_float32(mapped_action("infobatch", r, num_samples=n, num_below_mean=n1))
        p = learned(n, 11, score="loss")
        counts = torch.zeros(n, dtype=torch.float64)
        for _ in range(draws):
            plan = p.plan(1, s, action)
            kept = plan.indices.tolist()
            assert len(kept) == ref.indices.numel()  # InfoBatch's exact count |D2| + int(keep |D1|)
            assert d2 <= set(kept)  # all of D2
            in_d1 = d1[plan.indices]
            assert int(in_d1.sum()) == k1
            assert torch.all(plan.weights[~in_d1] == 1.0)
            w1 = plan.weights[in_d1]
            assert torch.allclose(w1, torch.full_like(w1, n1 / k1))
            assert float(w1[0]) == pytest.approx(1 / (1 - r), rel=0.02)  # InfoBatch's 1 / (1 - r)
            counts[plan.indices] += 1
        freq = counts[d1] / draws  # D1 drawn uniformly, as InfoBatch does
        expected = k1 / n1
        assert float((freq - expected).abs().max()) < 4.5 * math.sqrt(expected * (1 - expected) / draws) + 0.01
    # with the default ema score the protected set is the top |D2| by mu instead
    plan = learned(n).plan(1, s, via_float32(mapped_action("infobatch", 0.5, num_samples=n, num_below_mean=n1)))
    assert set(torch.topk(s.ema, n - n1).indices.tolist()) <= set(plan.indices.tolist())


def test_infobatch_mapping_uses_the_official_truncation():
    """``int(keep * |D1|)`` without epsilon: at r = 0.8 and |D1| = 5 InfoBatch keeps none of D1."""
    n, n1 = 10, 5
    loss = torch.tensor([0.0] * n1 + [1.0] * (n - n1))
    action = via_float32(mapped_action("infobatch", 0.8, num_samples=n, num_below_mean=n1))
    plan = learned(n, 0, score="loss").plan(1, table(loss, ema=loss), action)
    assert sorted(plan.indices.tolist()) == list(range(n1, n))
    ib = InfoBatchPruner()
    ib.reset(n, 10, "cpu", gen(0))
    assert sorted(ib.plan(1, table(loss, ema=loss), {"prune_ratio": 0.8}).indices.tolist()) == list(range(n1, n))


# -- inclusion probabilities and importance weights -------------------------------------------------------------
def test_inclusion_probabilities_match_monte_carlo():
    n, draws = 120, 6000
    g = gen(3)
    u = torch.arange(n, dtype=torch.float64) / (n - 1) - 0.5
    for k, beta in ((30, 2.0), (30, 8.0), (90, 4.0), (10, 25.0)):
        logits = beta * u
        keys = logits + -torch.log(-torch.log(torch.rand(draws, n, generator=g, dtype=torch.float64)))
        mc = (
            torch.zeros(n, dtype=torch.float64).index_add_(
                0, torch.topk(keys, k, dim=1).indices.reshape(-1), torch.ones(draws * k, dtype=torch.float64)
            )
            / draws
        )
        p = inclusion_probabilities(logits, k, spread=beta)
        assert float(p.sum()) == pytest.approx(k, abs=1e-6)
        assert float((p - mc).abs().max()) < 0.03, (k, beta)
        naive = (k * torch.softmax(logits, 0)).clamp(max=1.0)  # the textbook approximation is much worse here
        assert float((naive - mc).abs().max()) > float((p - mc).abs().max())
    torch.testing.assert_close(
        inclusion_probabilities(torch.zeros(50, dtype=torch.float64), 20), torch.full((50,), 0.4, dtype=torch.float64)
    )
    assert torch.equal(inclusion_probabilities(u, 0), torch.zeros(n, dtype=torch.float64))
    assert torch.equal(inclusion_probabilities(u, n), torch.ones(n, dtype=torch.float64))


def test_importance_weights_are_horvitz_thompson_and_clipped():
    n, r, draws = 400, 0.5, 300
    loss = skewed(n, 9)
    s = table(loss)
    p = learned(n, 12)
    # moderate sharpness: every p_i > 1 / max_weight, so no clipping and the weighted sum is unbiased
    est = [
        float((plan.weights.double() * loss[plan.indices].double()).sum())
        for plan in kept_sets(p, s, act(r, sharpness=0.25, rescale=1.0), draws)
    ]
    assert np.mean(est) == pytest.approx(float(loss.double().sum()), rel=0.015)
    # the greedy part has weight 1, the drawn part p^-rescale, all clipped at max_weight
    for rescale in (0.5, 1.0):
        plan = learned(n, 1, max_weight=4.0).plan(1, s, act(0.8, sharpness=0.9, rescale=rescale, greedy=0.5))
        assert plan.weights.min() >= 1.0 and plan.weights.max() <= 4.0 + 1e-6
        g = kept_count(n, 0.8) - math.floor(0.5 * kept_count(n, 0.8))
        hard = set(torch.topk(loss, g).indices.tolist())
        is_hard = torch.tensor([i in hard for i in plan.indices.tolist()])
        assert int(is_hard.sum()) == g and torch.all(plan.weights[is_hard] == 1.0)
    plan = learned(n, 1).plan(1, s, act(0.8, sharpness=0.5, rescale=1.0))
    assert float(plan.weights.max()) == pytest.approx(10.0)  # easy samples drawn at p < 0.1 hit the default clip


def test_same_seed_same_plan_rescale_does_not_change_the_draw_and_global_rngs_untouched():
    n = 500
    s = table(skewed(n))
    torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)  # a known state, not the one found
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state().clone())
    a = act(0.6, sharpness=0.4, greedy=0.2)
    p1, p2, p3 = learned(n, 21), learned(n, 21), learned(n, 22)
    x, y, z = p1.plan(1, s, a), p2.plan(1, s, a | {"rescale": 0.7}), p3.plan(1, s, a)
    assert torch.equal(x.indices, y.indices) and x.weights is None and y.weights is not None
    assert not torch.equal(x.indices, z.indices)
    assert torch.equal(p1.plan(2, s, a).indices, p2.plan(2, s, a).indices)
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])


def test_ties_are_broken_at_random_and_unseen_samples_rank_hardest():
    n, r = 200, 0.5
    flat = table(torch.zeros(n))  # e.g. losses that underflowed to 0: no index order may leak into the choice
    a, b = (set(learned(n, seed).plan(1, flat, act(r, sharpness=1.0)).indices.tolist()) for seed in (1, 2))
    assert a != b and len(a) == kept_count(n, r)
    s = table(skewed(n))
    s.observed[: n // 2] = False  # never had a loss of their own: explored first at sharpness +1
    kept = set(learned(n).plan(1, s, act(r, sharpness=1.0)).indices.tolist())
    assert kept == set(range(n // 2))


# -- observation features ---------------------------------------------------------------------------------------
def test_new_features_are_documented_and_appended():
    assert FEATURE_NAMES[-len(NEW_FEATURES) :] == NEW_FEATURES and set(FEATURE_DOCS) == set(FEATURE_NAMES)
    st = StepStats(val_loss=2.0, val_accuracy=0.3, prev_val_loss=2.0, prev_val_accuracy=0.3)
    assert st.best_val_accuracy == 0.3 and st.val_history == ((0, 0.3),)
    for epoch, accuracy in ((1, 0.5), (2, 0.45), (3, 0.6)):
        st.val_accuracy = accuracy
        st.record_val(epoch)
    assert st.val_history == ((1, 0.5), (2, 0.45), (3, 0.6)) and st.best_val_accuracy == 0.6
    assert _slope(st.val_history) == pytest.approx(0.05)  # least squares over the last 3
    assert _slope(((0, 0.1), (1, 0.4))) == pytest.approx(0.3) and _slope(((0, 0.1),)) == 0.0


def expected_new_features(env: PruningEnv, accuracies: list[tuple[int, float]]) -> list[float]:
    run = env.run
    sc = run.scores
    obs = sc.observed
    acc = accuracies[-1][1]
    pts = accuracies[-3:]
    if len(pts) >= 2:
        xs, ys = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
        slope = float(np.polyfit(xs, ys, 1)[0])
    else:
        slope = 0.0
    spread = float(sc.ema_var[obs].clamp_min(0).sqrt().double().sum())
    mu = float(sc.ema[obs].double().sum())
    return [
        acc / max(a for _, a in accuracies),
        slope * run.epochs / 10,
        float(sc.last_correct[obs].double().mean()) - acc if obs.any() else 0.0,
        float(((run.epoch - 1) - sc.last_epoch.double()).mean() / run.epoch) if run.epoch else 0.0,
        spread / (mu + spread) if mu + spread > 0 else 0.0,
    ]


def test_new_features_computed_correctly_in_an_episode():
    env = PruningEnv(epochs=5, train_size=1000, pruner="learned", seed=4)
    idx = [FEATURE_NAMES.index(f) for f in NEW_FEATURES]
    obs, info = env.reset()
    accs = [(0, info["val_accuracy"])]
    assert obs[idx].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    # keep the hardest half: easy samples go stale, so score_age rises above 0
    action = env.encode_action(prune_ratio=0.5, sharpness=1.0)
    ages = []
    term = False
    while not term:
        obs, _, term, _, info = env.step(action)
        accs.append((info["epoch"], info["val_accuracy"]))
        got = obs[idx]
        assert np.all(np.isfinite(got)) and np.all(np.abs(got) <= 5.0)
        np.testing.assert_allclose(got, expected_new_features(env, accs), rtol=1e-4, atol=1e-5)
        assert 0.0 <= got[0] <= 1.0 and 0.0 <= got[3] <= 1.0 and 0.0 <= got[4] < 1.0 and -1 <= got[2] <= 1
        ages.append(float(got[3]))
    assert ages[0] == 0.0 and ages[-1] > 0.0  # the full-data warm-up refreshes every score, pruning ages them


# -- end to end ----------------------------------------------------------------------------------------------------
def test_env_with_learned_pruner_passes_sb3_check_env_and_runs_an_episode():
    from stable_baselines3.common.env_checker import check_env

    env = gymnasium.make("prunegym.envs:prunegym/Synthetic-MLP-v0", pruner="learned", epochs=3, train_size=1000)
    assert env.unwrapped.action_names == ("prune_ratio", "sharpness", "rescale", "greedy")
    assert env.action_space.shape == (4,) and env.observation_space.shape == (len(FEATURE_NAMES),)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=5)
    term = trunc = False
    while not (term or trunc):
        obs, reward, term, trunc, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert env.observation_space.contains(obs) and math.isfinite(reward)
    assert term and info["epoch"] == 3 and 0 < info["compute_fraction_total"] <= 1


def test_mapped_infobatch_in_the_env_prunes_like_infobatch():
    """First pruned epoch, same seed: the learned pruner, fed InfoBatch's mapped action (|D1| read from the
    ``frac_below_mean`` feature), keeps exactly as many samples as InfoBatch does."""
    kw = dict(epochs=3, train_size=1000, seed=6)
    ib = PruningEnv(pruner="infobatch", **kw)
    ib.reset()
    ib.step(ib.encode_action(prune_ratio=0.5))
    _, _, _, _, ref = ib.step(ib.encode_action(prune_ratio=0.5))
    env = PruningEnv(pruner="learned", pruner_kwargs={"score": "loss"}, **kw)
    env.reset()
    obs, *_ = env.step(env.encode_action(prune_ratio=0.0))  # the warm-up epoch
    n = env.run.num_train
    n1 = round(float(obs[FEATURE_NAMES.index("frac_below_mean")]) * n)
    assert n1 == int((env.run.scores.loss < env.run.scores.loss.mean()).sum())
    _, _, _, _, info = env.step(env.encode_action(**mapped_action("infobatch", 0.5, num_samples=n, num_below_mean=n1)))
    assert info["kept_fraction"] == pytest.approx(1 - math.ceil(0.5 * n1) / n)
    assert info["kept_fraction"] == pytest.approx(ref["kept_fraction"])  # same seed, same warm-up epoch
