"""SeTa (Zhou et al., CVPR 2025) on crafted score histories: the sliding window's positions over several
epochs, the group order (easy to hard), never-trained samples scored 3 as the official code initialises them,
the all-equal case (``torch.chunk`` groups, possibly fewer than ``num_group``), the empty selection, the
partial-annealing count, the 1-D k-means against the planted and scikit-learn's partition, the published
schedule and a whole episode."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from prunegym.baselines import SeTaPruner, make_policy
from prunegym.baselines.seta import INITIAL_SCORE, kmeans_1d, window_groups
from prunegym.envs import PruningEnv
from prunegym.training import ScoreTable

pytestmark = pytest.mark.usefixtures("one_thread")


def seta(n: int, seed: int = 0, **kwargs) -> SeTaPruner:
    p = SeTaPruner(**kwargs)
    p.reset(n, 10, "cpu", torch.Generator().manual_seed(seed))
    return p


def table(loss, observed=None) -> ScoreTable:
    """A score table with these latest losses; every sample trained (``observed``) unless a mask says not."""
    t = ScoreTable(len(loss))
    t.loss.copy_(torch.as_tensor(loss, dtype=torch.float32))
    t.observed.copy_(torch.ones(len(loss), dtype=torch.bool) if observed is None else torch.as_tensor(observed))
    return t


def clustered(sizes=(20, 20, 20, 20, 20), gap: float = 10.0, seed: int = 0):
    """Scores in well-separated clusters (cluster c around c * gap, jitter < 1), shuffled; returns
    (scores [N], cluster label [N])."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    return labels.float() * gap + torch.rand(labels.numel(), generator=g), labels


def plan_sets(p, scores, epochs, r=0.0, w=0.9):
    return [set(p.plan(e, scores, {"prune_ratio": r, "window_scale": w}).indices.tolist()) for e in range(epochs)]


# -- the window -------------------------------------------------------------------------------------------
def test_window_rule():
    # 5 groups at 0.9: round(4.5) = 4 (Python rounds half to even), slide 1
    assert [window_groups(5, 0.9, t) for t in range(5)] == [(0, 5), (1, 5), (0, 4), (1, 5), (0, 4)]
    # 5 groups at 0.6: window 3, slide 2: starts 1, 2, 0, 1, ...
    assert [window_groups(5, 0.6, t) for t in range(6)] == [(0, 5), (1, 4), (2, 5), (0, 3), (1, 4), (2, 5)]
    assert window_groups(3, 0.9, 1) == (0, 3)  # round(2.7) = 3: slide 0
    assert window_groups(5, 0.1, 1) == (1, 2)  # round(0.5) = 0: at least one group (the official code asserts)


@pytest.mark.parametrize(
    "w,expected",
    [
        (0.9, [range(5), range(1, 5), range(0, 4), range(1, 5), range(0, 4)]),
        (0.6, [range(5), range(1, 4), range(2, 5), range(0, 3), range(1, 4)]),
    ],
)
def test_window_positions_over_epochs_on_clustered_scores(w, expected):
    """r = 0 keeps every sample in step 1, so each epoch keeps exactly the clusters in the window."""
    scores, labels = clustered()
    p = seta(100)
    for e, (kept, groups) in enumerate(zip(plan_sets(p, table(scores), 5, w=w), expected)):
        assert kept == set(torch.nonzero(torch.isin(labels, torch.tensor(list(groups)))).view(-1).tolist()), e
    assert p.windowed_epochs == 5 and p.last_groups == [20] * 5


def test_groups_are_sorted_easy_to_hard():
    scores, labels = clustered(sizes=(7, 30, 12, 25, 26), seed=3)
    p = seta(100)
    ordered, bounds = p.groups(scores, torch.arange(100))
    assert bounds == [0, 7, 37, 49, 74, 100]
    groups = [ordered[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    for c, members in enumerate(groups):
        assert set(labels[members].tolist()) == {c}  # the c-th easiest group is the c-th cluster
    assert all(float(scores[a].max()) < float(scores[b].min()) for a, b in zip(groups[:-1], groups[1:]))


def test_random_keep_then_window_of_its_groups():
    """r = 0.5: the window is applied to the groups of the random half, not of all N."""
    scores, labels = clustered(sizes=(40,) * 5, seed=1)
    p = seta(200, seed=4)
    p.plan(0, table(scores), {"prune_ratio": 0.5, "window_scale": 0.9})  # t = 0
    twin = torch.Generator().set_state(p.generator.get_state())
    kept = set(p.plan(1, table(scores), {"prune_ratio": 0.5, "window_scale": 0.9}).indices.tolist())
    half = torch.randperm(200, generator=twin)[:100]  # the same draw as the pruner's step 1
    assert kept == {i for i in half.tolist() if labels[i] >= 1}  # t = 1: groups 1-4 of the half


# -- never-trained samples ------------------------------------------------------------------------------------
def planted_with_untrained(seed: int = 0):
    """100 samples: 80 trained in four tight clusters at losses 1.0, 1.5, 2.0, 2.5 (20 each) and 20 never trained
    (their stored loss is the table's initial 0); returns (table, cluster label [N]: 0-3, 4 for untrained)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(100) // 20
    labels = labels[torch.randperm(100, generator=g)]
    loss = 1.0 + 0.5 * labels.float() + 0.04 * torch.rand(100, generator=g)
    untrained = labels == 4
    loss[untrained] = 0.0
    return table(loss, observed=~untrained), labels


def members(labels: torch.Tensor, groups) -> set[int]:
    return set(torch.nonzero(torch.isin(labels, torch.tensor(list(groups)))).view(-1).tolist())


def test_never_trained_samples_score_three_as_in_the_official_code():
    """The official ``InfoBatch.__init__`` (inherited by ``SeTa``) starts every score at 3: a never-trained
    sample is the hardest here, so the window at t = 1 (groups 1-4 of 5) keeps it and the one at t = 2 (0-3)
    drops it. Scored 0 (the table's stored value) it would be the easiest group: dropped at t = 1, kept at 2."""
    scores, labels = planted_with_untrained()
    p = seta(100)
    kept = plan_sets(p, scores, 3, w=0.9)  # r = 0: every sample is a candidate
    assert kept[0] == set(range(100))  # t = 0 keeps every group
    assert kept[1] == members(labels, (1, 2, 3, 4))  # the untrained (label 4) kept with the hard groups
    assert kept[2] == members(labels, (0, 1, 2, 3))  # ... and dropped when the window ends before them
    assert p.last_groups == [20] * 5
    assert INITIAL_SCORE == 3.0
    torch.testing.assert_close(p.scores_of(scores), torch.where(labels == 4, torch.tensor(3.0), scores.loss))


def test_first_window_keeps_the_samples_the_first_epoch_did_not_train():
    """r = 0.5 through the engine's score update: epoch 0 (t = 0) trains a random half, whose losses (all below
    3) are recorded; at t = 1 every candidate never trained scores 3, falls in the hardest group and is kept."""
    n = 200
    p = seta(n, seed=5)
    scores = ScoreTable(n)
    first = p.plan(0, scores, {"prune_ratio": 0.5, "window_scale": 0.9}).indices
    g = torch.Generator().manual_seed(1)
    losses = 2.5 * torch.rand(first.numel(), generator=g)
    scores.update(first, losses, torch.zeros(first.numel(), dtype=torch.bool), 0)
    twin = torch.Generator().set_state(p.generator.get_state())
    kept = set(p.plan(1, scores, {"prune_ratio": 0.5, "window_scale": 0.9}).indices.tolist())
    candidates = torch.randperm(n, generator=twin)[:100]  # the same draw as the pruner's random keep
    untrained = set(candidates.tolist()) - set(first.tolist())
    assert len(untrained) > 30 and untrained <= kept
    assert len(kept) < 100  # the window dropped the easiest group of the trained candidates


# -- all-equal scores and empty selections ------------------------------------------------------------------
@pytest.mark.parametrize("n,w,n_chunks", [(6, 0.9, 3), (10, 0.5, 5), (12, 0.5, 4), (13, 0.6, 5)])
def test_all_equal_scores_use_torch_chunk_of_the_random_keep(n, w, n_chunks):
    p = seta(n, seed=2)
    scores = table(torch.full((n,), 3.0))
    p.plan(0, scores, {"prune_ratio": 0.0, "window_scale": w})
    for t in (1, 2, 3):
        twin = torch.Generator().set_state(p.generator.get_state())
        kept = p.plan(t, scores, {"prune_ratio": 0.0, "window_scale": w}).indices
        chunks = torch.chunk(torch.randperm(n, generator=twin), 5)  # the official kmeans_group
        assert len(chunks) == n_chunks and len(p.last_groups) == n_chunks
        first, end = window_groups(len(chunks), w, t)
        assert set(kept.tolist()) == set(torch.cat(chunks[first:end]).tolist()), (t, first, end)


def test_empty_window_keeps_one_random_sample():
    """Two distinct scores in 5 groups: k-means leaves 3 groups empty; a window on one of them keeps a single
    sample drawn from all N (the official code's guard against an empty epoch)."""
    scores = table(torch.tensor([0.0] * 5 + [1.0] * 5))
    p = seta(10, seed=1)
    p.plan(0, scores, {"prune_ratio": 0.0, "window_scale": 0.2})
    seen_empty = False
    for t in range(1, 5):
        kept = p.plan(t, scores, {"prune_ratio": 0.0, "window_scale": 0.2}).indices
        sizes = p.last_groups
        assert sorted(sizes) == [0, 0, 0, 5, 5]
        if sizes[t % 5] == 0:
            seen_empty = True
            assert kept.numel() == 1
        else:
            assert kept.numel() == 5
    assert seen_empty


# -- partial annealing ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,r,count", [(1000, 0.1, 900), (1000, 0.95, 100), (7, 0.3, 4), (4000, 0.1, 3600)])
def test_annealing_keeps_a_random_int_n_keep(n, r, count):
    """window_scale = 1: a uniformly random ``int(N * keep)``, keep = min(1, max(0.1, 1 - r)); the window
    position does not move."""
    assert count == int(n * min(1.0, max(0.1, 1.0 - r)))
    p = seta(n)
    scores, _ = clustered(sizes=(n,))
    plans = [p.plan(e, table(scores), {"prune_ratio": r, "window_scale": 1.0}) for e in range(3)]
    assert all(pl.indices.numel() == count and torch.unique(pl.indices).numel() == count for pl in plans)
    assert all(pl.weights is None and pl.claimed_prune_ratio == min(r, 0.9) for pl in plans)
    assert p.windowed_epochs == 0


# -- 1-D k-means ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_kmeans_1d_finds_well_separated_clusters(seed):
    scores, labels = clustered(sizes=(13, 50, 5, 31, 21), gap=5.0, seed=seed)
    order = torch.argsort(scores)
    centres, bounds = kmeans_1d(scores[order], 5, torch.Generator().manual_seed(seed))
    assert bounds.tolist() == [0, 13, 63, 68, 99, 120]
    for c, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        assert set(labels[order[a:b]].tolist()) == {c}
        assert float(centres[c]) == pytest.approx(float(scores[order[a:b]].double().mean()))


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_kmeans_1d_matches_scikit_learn_on_well_separated_data():
    from sklearn.cluster import KMeans

    scores, _ = clustered(sizes=(13, 50, 5, 31, 21), gap=5.0, seed=7)
    order = torch.argsort(scores)
    _, bounds = kmeans_1d(scores[order], 5, torch.Generator().manual_seed(0))
    labels = KMeans(n_clusters=5, random_state=0).fit(scores[order].numpy()[:, None].astype(np.float64)).labels_
    ours = np.repeat(np.arange(5), np.diff(bounds.numpy()))
    # the same partition (scikit-learn's labels are a permutation of ours)
    assert len(set(labels.tolist())) == 5 and len({(a, b) for a, b in zip(ours.tolist(), labels.tolist())}) == 5


# -- schedule, knobs and a whole episode -------------------------------------------------------------------
def test_policy_schedule_windows_then_anneals():
    env = PruningEnv(task="synthetic-mlp", pruner="seta", epochs=10)
    policy = make_policy("seta", env)
    assert policy.hparams == {"prune_ratio": 0.1, "window_scale": 0.9, "delta": 0.875}
    sched = [policy.schedule(e) for e in range(10)]  # 10 * 0.875 = 8.75: epochs 0-7 windowed
    assert sched == [{"prune_ratio": 0.1, "window_scale": 0.9}] * 8 + [{"prune_ratio": 0.1, "window_scale": 1.0}] * 2
    assert [k.name for k in env.codec.knobs] == ["window_scale"]
    with pytest.raises(ValueError, match="delta=1.5"):
        make_policy("seta", env, delta=1.5)
    with pytest.raises(ValueError, match="window_scale=0.05"):
        make_policy("seta", env, window_scale=0.05)


def test_episode_through_the_env():
    env = PruningEnv(task="synthetic-mlp", pruner="seta", epochs=10)
    policy = make_policy("seta", env)
    obs, _ = env.reset(seed=0)
    infos, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    kept = [i["kept_fraction"] for i in infos]
    assert kept[0] == kept[8] == kept[9] == 0.9  # t = 0 keeps all groups; annealing: int(4000 * 0.9) / 4000
    assert all(k < 0.9 for k in kept[1:8])  # the window drops a group of the random keep
    assert [i["claimed_prune_ratio"] for i in infos] == [0.1] * 10
    assert infos[-1]["compute_fraction_total"] == pytest.approx(sum(kept) / 10)
    assert infos[-1]["selector_compute_fraction_total"] == 0.0
    assert infos[-1]["test_accuracy"] > 0.5
    assert env.unwrapped.pruner.windowed_epochs == 8


@pytest.mark.parametrize("corner", [-1.0, 1.0])
def test_extreme_actions_keep_the_episode_finite(corner):
    env = PruningEnv(task="synthetic-mlp", pruner="seta", epochs=3, train_size=1000)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(np.full(env.action_space.shape, corner, np.float32))
        assert math.isfinite(reward) and np.all(np.isfinite(obs))
        done = term or trunc
    assert "error" not in info and 0.0 < info["kept_fraction"] <= 1.0
