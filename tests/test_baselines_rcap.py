"""RCAP (Hassan et al., UAI 2025) against a re-implementation of the official rule (atif-hassan/
RCAP-dynamic-dataset-pruning, ``datacull/methods/RCAP.py``: ``RCAPImportance.compute_importance`` and
``RCAPDataLoader.compute_subset``), written here from the official code's logic in numpy, on crafted losses,
labels and previous subsets: the class keep counts (hand-computed on one case, the re-implementation on a grid),
the two documented deviations (the saturation loop's shared count, the float ceilings), the within-class draw's
distribution (numpy's weighted ``choice`` and ours against the exact inclusion probabilities), determinism from
the generator, unknown labels, the published schedule and a whole episode."""

from __future__ import annotations

import math
import random
from itertools import permutations
from types import SimpleNamespace

import gymnasium
import numpy as np
import pytest
import torch

from prunegym.baselines import RCAPPruner, make_policy, make_pruner
from prunegym.baselines.base import kept_count
from prunegym.envs import PruningEnv
from prunegym.training import ScoreTable

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the official rule, re-implemented from its logic ---------------------------------------------------------
def official_importance(loss, observed, labels, beta, clip=None):
    """``RCAPImportance.compute_importance``: losses start at the clipping threshold (default ``log C``), a
    logged loss replaces it, all are clipped to ``[0, clip]``, then a stable softmax of ``loss / beta`` within
    each class (labels ``0 .. C - 1``)."""
    num_classes = len(np.unique(labels))
    clip = np.log(num_classes) if clip is None else clip
    losses = np.where(observed, loss, clip).astype(np.float64)
    losses = np.clip(losses, 0, clip)
    importance = np.zeros(len(labels))
    for c in range(num_classes):
        members = np.where(labels == c)[0]
        z = losses[members] / beta
        z = z - z.max()
        importance[members] = np.exp(z) / np.exp(z).sum()
    return importance


def official_counts(importance, labels, previous, required, as_written=False, tol=1e-9):
    """``RCAPDataLoader.compute_subset`` up to the draw: class loss over the previous subset, ``sqrt`` of it
    times the class prior, the saturation loop, ``ceil``. ``as_written``: the loop shares the whole
    ``required`` (the code's ``self.required_num_samples``) and the ceiling has no tolerance; else the
    decremented local count is shared (the fix ``baselines/rcap.py`` documents)."""
    num_classes = len(np.unique(labels))
    members = [np.where(labels == c)[0] for c in range(num_classes)]
    sizes = np.array([len(m) for m in members])
    prev = [np.intersect1d(m, previous) for m in members]
    class_loss = np.array([importance[p].sum() for p in prev])
    avg = np.sqrt(class_loss * sizes / sizes.sum())
    fraction = avg / avg.sum() * (required / sizes)
    local = required
    while True:
        over = np.where(fraction > 1)[0]
        if len(over) == 0:
            break
        fraction[over] = 1
        rest = np.where(fraction < 1)[0]
        local -= sizes[over].sum()
        shared = required if as_written else local
        fraction[rest] = avg[rest] / avg[rest].sum() * (shared / sizes[rest])
    return np.ceil(fraction * sizes - (0 if as_written else tol)).astype(int).tolist()


# -- helpers ---------------------------------------------------------------------------------------------------
def table(labels, loss=None, observed=None) -> ScoreTable:
    labels = torch.as_tensor(labels, dtype=torch.int64)
    t = ScoreTable(labels.numel())
    t.labels.copy_(labels)
    if loss is not None:
        t.loss.copy_(torch.as_tensor(loss, dtype=torch.float32))
        seen = torch.ones(labels.numel(), dtype=torch.bool) if observed is None else torch.as_tensor(observed)
        t.observed.copy_(seen)
    return t


def rcap(n: int, seed: int = 0, **kwargs) -> RCAPPruner:
    p = RCAPPruner(**kwargs)
    p.reset(n, 10, "cpu", torch.Generator().manual_seed(seed))
    return p


def trained(p: RCAPPruner, indices) -> None:
    """Tell ``p`` which samples reached the loss last epoch (what the engine's result carries)."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    p.update(SimpleNamespace(indices=idx, losses=torch.zeros(idx.numel())), None)


def per_class(t: ScoreTable, indices: torch.Tensor) -> list[int]:
    return torch.bincount(t.labels[indices], minlength=int(t.labels.max()) + 1).tolist()


# -- the class keep counts -------------------------------------------------------------------------------------
def test_hand_computed_class_counts():
    """Classes of 200, 100, 100 (tau = log 3, beta = 1/4, so exp(tau / beta) = 81): class 0 was trained whole
    (L = 1); class 1's trained half has the loss tau and its other half 0 (L = 81 / 82); class 2 the reverse
    (L = 1 / 82). K = 200 is shared as sqrt(L_c n_c / N) and each share rounded up."""
    labels = [0] * 200 + [1] * 100 + [2] * 100
    tau = math.log(3)
    loss = [0.5] * 200 + [tau] * 50 + [0.0] * 50 + [0.0] * 50 + [tau] * 50
    prev = list(range(200)) + list(range(200, 250)) + list(range(300, 350))
    a = [math.sqrt(1 * 0.5), math.sqrt(81 / 82 * 0.25), math.sqrt(1 / 82 * 0.25)]
    expected = [math.ceil(200 * ac / sum(a)) for ac in a]
    assert expected == [113, 79, 9]
    t = table(labels, loss)
    p = rcap(400)
    trained(p, prev)
    plan = p.plan(1, t, {"prune_ratio": 0.5, "beta": 0.25})
    assert per_class(t, plan.indices) == p.last_counts == expected
    imp = official_importance(np.array(loss), np.ones(400, bool), np.array(labels), 0.25)
    assert official_counts(imp, np.array(labels), np.array(prev), 200) == expected
    assert plan.weights is None and plan.claimed_prune_ratio == 0.5
    assert len(set(plan.indices.tolist())) == plan.indices.numel() == 201


@pytest.mark.parametrize(
    "r,expected",
    [(0.5, [127, 74]), (0.7, [77, 44]), (0.2, [220, 100]), (0.1, [260, 100]), (0.0, [300, 100])],
)
def test_first_epoch_shares_by_the_square_root_of_the_prior(r, expected):
    """Before any training every class counts whole (L = 1) and every loss is tau: class c gets
    K sqrt(n_c) / sum sqrt(n); a class over its size keeps all of it and the rest is re-shared (r = 0.2:
    class 1 would get 117 of its 100)."""
    labels = [0] * 300 + [1] * 100
    t = table(labels)
    plan = rcap(400).plan(0, t, {"prune_ratio": r, "beta": 0.25})
    assert per_class(t, plan.indices) == expected
    k = kept_count(400, r)
    imp = official_importance(np.zeros(400), np.zeros(400, bool), np.array(labels), 0.25)
    assert official_counts(imp, np.array(labels), np.arange(400), k) == expected


def test_the_official_loop_shares_the_whole_count_again():
    """RCAP.py line 113 shares ``self.required_num_samples`` after a class saturates, so the official code keeps
    all 400 at r = 0.2 (K = 320) and 390 at r = 0.6 on three classes; ours shares what is left."""
    labels = np.array([0] * 300 + [1] * 100)
    imp = official_importance(np.zeros(400), np.zeros(400, bool), labels, 0.25)
    assert official_counts(imp, labels, np.arange(400), 320, as_written=True) == [300, 100]
    assert official_counts(imp, labels, np.arange(400), 320) == [220, 100]
    labels3 = np.array([0] * 600 + [1] * 30 + [2] * 20)
    imp3 = official_importance(np.zeros(650), np.zeros(650, bool), labels3, 0.25)
    official = official_counts(imp3, labels3, np.arange(650), kept_count(650, 0.6), as_written=True)
    ours = rcap(650).plan(0, table(labels3), {"prune_ratio": 0.6, "beta": 0.25}).indices.numel()
    assert sum(official) > kept_count(650, 0.6) + 2 and ours <= kept_count(650, 0.6) + 2


def test_counts_round_the_float_products_as_kept_count_does():
    """The official ``ceil((1 - 0.7) * 100)`` is 31 (0.30000000000000004); ours keeps kept_count = 30; a class
    share whose float product is a whole number plus round-off is not rounded up either."""
    assert int(np.ceil((1 - 0.7) * 100)) == 31 and kept_count(100, 0.7) == 30
    t = table([0] * 100)
    assert rcap(100).plan(0, t, {"prune_ratio": 0.7, "beta": 1.0}).indices.numel() == 30
    t3 = table([0] * 100 + [1] * 100 + [2] * 100)  # three equal shares of K = 90: 30 each, not 31
    assert per_class(t3, rcap(300).plan(0, t3, {"prune_ratio": 0.7, "beta": 1.0}).indices) == [30, 30, 30]


def grid_case(seed: int):
    """Imbalanced classes (geometric sizes), labels shuffled, right-skewed losses, a tenth never trained."""
    g = np.random.default_rng(seed)
    c = int(g.integers(2, 7))
    sizes = np.maximum(2, (g.integers(60, 400) * 0.5 ** np.arange(c)).astype(int))
    labels = g.permutation(np.repeat(np.arange(c), sizes))
    loss = g.exponential(1.0, len(labels)) * g.uniform(0.3, 2.0, c)[labels]
    observed = g.random(len(labels)) > 0.1
    return labels, loss.astype(np.float32), observed


@pytest.mark.parametrize("seed", range(12))
def test_counts_match_the_official_rule_on_a_grid(seed):
    labels, loss, observed = grid_case(seed)
    n = len(labels)
    t = table(labels, loss, observed)
    for beta in (0.25, 1.0, 3.0):
        for r in (0.1, 0.3, 0.5, 0.8, 0.9):
            p = rcap(n, seed)
            first = p.plan(0, t, {"prune_ratio": 0.5, "beta": beta}).indices  # the previous subset
            trained(p, first)
            plan = p.plan(1, t, {"prune_ratio": r, "beta": beta})
            imp = official_importance(loss.astype(np.float64), observed, labels, beta)
            expected = official_counts(imp, labels, first.numpy(), kept_count(n, r))
            assert per_class(t, plan.indices) == expected, (seed, beta, r)
            assert torch.unique(plan.indices).numel() == plan.indices.numel()
            assert kept_count(n, r) <= plan.indices.numel() <= kept_count(n, r) + len(expected) - 1


def test_a_class_with_nothing_trained_counts_whole():
    """A budget cut that trained no sample of a class: L_c = 1 (as at the start), not 0 (which would starve it)."""
    labels = [0] * 100 + [1] * 100
    t = table(labels, [1.0] * 200)
    p = rcap(200)
    trained(p, range(50))  # class 0 half trained (L_0 = 1/2 on equal losses), class 1 not at all
    a = [math.sqrt(0.5 * 0.5), math.sqrt(1.0 * 0.5)]
    assert per_class(t, p.plan(1, t, {"prune_ratio": 0.5, "beta": 1.0}).indices) == [
        math.ceil(100 * ac / sum(a) - 1e-9) for ac in a
    ]


def test_ratio_zero_is_the_full_data():
    t = table([0, 1] * 50)
    plan = rcap(100).plan(3, t, {"prune_ratio": 0.0, "beta": 0.25})
    assert sorted(plan.indices.tolist()) == list(range(100)) and plan.claimed_prune_ratio == 0.0


# -- the draw within a class -------------------------------------------------------------------------------------
def inclusion(p: np.ndarray, k: int) -> np.ndarray:
    """Exact probability that each item is among ``k`` drawn without replacement, each draw proportional to
    ``p`` over the items left (successive sampling)."""
    out = np.zeros(len(p))
    for seq in permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        out[list(seq)] += prob
    return out


def test_the_draw_follows_the_official_weighted_choice():
    """Class 0 holds four samples with losses 0, 0.5, 1, 2 (tau = 3, beta = 1/2): two are kept, drawn with
    probability softmax(loss / beta). numpy's ``choice(p=..., replace=False)`` (the official draw) and ours
    both match the exact inclusion probabilities."""
    labels = np.array([0] * 4 + [1] * 4)
    loss = np.array([0.0, 0.5, 1.0, 2.0] + [1.0] * 4)
    p0 = official_importance(loss, np.ones(8, bool), labels, 0.5, clip=3.0)[:4]
    exact = inclusion(p0, 2)
    reps = 3000
    rng = np.random.RandomState(0)
    theirs = np.zeros(4)
    for _ in range(reps):
        theirs[rng.choice(4, size=2, replace=False, p=p0)] += 1
    t = table(labels, loss)
    p = rcap(8, clipping_threshold=3.0)
    ours = np.zeros(4)
    for _ in range(reps):
        kept = p.plan(1, t, {"prune_ratio": 0.5, "beta": 0.5}).indices
        assert p.last_counts == [2, 2]
        ours[kept[kept < 4].numpy()] += 1
    assert np.abs(theirs / reps - exact).max() < 0.03
    assert np.abs(ours / reps - exact).max() < 0.03


def test_same_generator_same_plan_and_no_global_rng():
    labels, loss, observed = grid_case(3)
    t = table(labels, loss, observed)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    plans = [rcap(len(labels), s).plan(0, t, {"prune_ratio": 0.5, "beta": 0.25}).indices for s in (5, 5, 6)]
    assert torch.equal(plans[0], plans[1]) and not torch.equal(plans[0], plans[2])
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


# -- refusals --------------------------------------------------------------------------------------------------
def test_unknown_labels_are_refused_in_one_line():
    p = rcap(400)
    with pytest.raises(ValueError, match=r"^rcap needs each sample's training label \(scores.labels\), but 400 of "):
        p.plan(0, ScoreTable(400), {"prune_ratio": 0.5, "beta": 0.25})
    t = table([0, 1] * 200)
    t.labels[:3] = -1
    with pytest.raises(ValueError) as e:
        p.plan(0, t, {"prune_ratio": 0.5, "beta": 0.25})
    assert str(e.value) == "rcap needs each sample's training label (scores.labels), but 3 of 400 are unknown (-1)"


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, True, "1"])
def test_bad_clipping_threshold(tau):
    with pytest.raises(ValueError, match="^clipping_threshold="):
        make_pruner("rcap", clipping_threshold=tau)


# -- schedule and a whole episode ----------------------------------------------------------------------------------
def test_policy_prunes_every_epoch_at_the_published_defaults():
    env = PruningEnv(task="synthetic-mlp", pruner="rcap", epochs=6)
    policy = make_policy("rcap", env)
    assert policy.hparams == {"prune_ratio": 0.8, "beta": 0.25}
    # no warm-up, no annealing: the same decision at every epoch
    assert [policy.schedule(e) for e in range(6)] == [{"prune_ratio": 0.8, "beta": 0.25}] * 6
    assert [k.name for k in env.codec.knobs] == ["beta"]
    with pytest.raises(ValueError, match="beta=5.0"):
        make_policy("rcap", env, beta=5.0)


def test_episode_through_the_env():
    env = gymnasium.make("prunegym.envs:prunegym/Synthetic-MLP-v0", pruner="rcap", epochs=3, train_size=500)
    policy = make_policy("rcap", env)
    pruner = env.unwrapped.pruner
    seen, plan = [], pruner.plan
    pruner.plan = lambda e, scores, action: seen.append((scores.labels.clone(), plan(e, scores, action))) or seen[-1][1]
    obs, _ = env.reset(seed=0)
    infos, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    env.close()
    labels = seen[0][0]
    sizes = torch.bincount(labels).tolist()
    k = kept_count(500, 0.8)
    a = [math.sqrt(s / 500) for s in sizes]  # epoch 0: every class whole, every loss tau
    first = [min(s, math.ceil(k * ac / sum(a) - 1e-9)) for s, ac in zip(sizes, a)]
    assert torch.bincount(labels[seen[0][1].indices], minlength=len(sizes)).tolist() == first
    for _, pl in seen:
        assert k <= pl.indices.numel() <= k + len(sizes) - 1
    assert [i["claimed_prune_ratio"] for i in infos] == [0.8] * 3
    assert [i["kept_fraction"] for i in infos] == [pl.indices.numel() / 500 for _, pl in seen]
    assert infos[-1]["compute_fraction_total"] == pytest.approx(sum(i["kept_fraction"] for i in infos) / 3)
    assert all(math.isfinite(i["val_accuracy"]) for i in infos)
