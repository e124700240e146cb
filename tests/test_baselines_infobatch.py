"""InfoBatch to the letter: the pruner and the schedule against a re-implementation of the official rule
(NUS-HPC-AI-Lab/InfoBatch, ``infobatch/infobatch.py``: ``InfoBatch.prune`` and ``IBSampler.reset``), written
here from the official code's logic, on the same score vectors over a grid of N, r, ties and all-equal scores:
counts, members of D2, weights, which epochs prune; and the claimed prune ratio of epochs that prune nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunegym.baselines import InfoBatchPruner, make_policy
from prunegym.baselines.infobatch import annealing_start
from prunegym.envs import PruningEnv
from prunegym.training import ScoreTable

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the official rule, re-implemented from its logic ---------------------------------------------------------
def official_prune(scores: torch.Tensor, prune_ratio: float, rng: np.random.Generator):
    """``InfoBatch.prune``: keep ratio ``min(1, max(0.1, 1 - r))``; D1 = scores < mean (float32 torch mean);
    ``int(keep * |D1|)`` of D1 drawn without replacement get weight ``1 / keep``; all of D2 weight 1."""
    keep_ratio = min(1.0, max(1e-1, 1.0 - prune_ratio))
    well_learned = (scores < scores.mean()).numpy()
    d1 = np.where(well_learned)[0]
    d2 = np.where(~well_learned)[0].tolist()
    selected = rng.choice(d1, int(keep_ratio * len(d1)), replace=False)
    weights = np.ones(len(scores))
    if len(selected) > 0:
        weights[selected] = 1 / keep_ratio
    return sorted(d2 + selected.tolist()), set(d2), weights, set(d1.tolist())


def official_prunes(epoch: int, num_epochs: int, delta: float) -> bool:
    """``IBSampler.reset``: epoch ``e`` (0-based) runs with ``iterations = e + 1`` and prunes unless
    ``iterations > num_epochs * delta``."""
    iterations = epoch + 1
    stop_prune = num_epochs * delta
    return not iterations > stop_prune


# -- score vectors: skewed, ties, all equal, two-valued -----------------------------------------------------
def score_vector(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + n)
    if kind == "skewed":
        return -torch.rand(n, generator=g).log()
    if kind == "ties":
        return torch.randint(0, 4, (n,), generator=g).float()
    if kind == "equal":
        return torch.full((n,), 3.0)
    return (torch.arange(n) % 2).float()  # two-valued: half below the mean


GRID_N = [1, 2, 5, 7, 10, 33, 100, 1000]
GRID_R = [0.001, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.999]


@pytest.mark.parametrize("kind", ["skewed", "ties", "equal", "two"])
def test_plan_matches_the_official_rule_on_a_grid(kind):
    for n in GRID_N:
        scores = score_vector(kind, n)
        table = ScoreTable(n)
        table.loss.copy_(scores)
        for r in GRID_R:
            kept, d2, weights, d1 = official_prune(scores, r, np.random.default_rng(0))
            p = InfoBatchPruner()
            p.reset(n, 10, "cpu", torch.Generator().manual_seed(1))
            plan = p.plan(1, table, {"prune_ratio": r})
            ours = plan.indices.tolist()
            case = f"n={n} r={r} {kind}"
            assert len(ours) == len(kept) and len(set(ours)) == len(ours), case  # count, no repeats
            assert d2 <= set(ours) and set(ours) - d2 <= d1, case  # all of D2, the rest from D1
            w = plan.weights.tolist()
            for i, wi in zip(ours, w):
                expected = 1 / min(1.0, max(0.1, 1.0 - r)) if i in d1 else 1.0
                assert wi == pytest.approx(expected, rel=1e-6), case
            assert {i for i in range(n) if weights[i] != 1} <= d1
            pruned = len(ours) < n
            assert plan.claimed_prune_ratio == (min(r, 0.9) if pruned else 0.0), case


def test_the_truncation_has_no_epsilon():
    """r = 0.8, |D1| = 5: keep * |D1| = 0.9999999999999998, int() gives 0 (the old floor(+1e-9) kept 1)."""
    scores = torch.tensor([0.0] * 5 + [1.0] * 5)
    kept, d2, _, _ = official_prune(scores, 0.8, np.random.default_rng(0))
    assert kept == list(range(5, 10))
    table = ScoreTable(10)
    table.loss.copy_(scores)
    p = InfoBatchPruner()
    p.reset(10, 10, "cpu", torch.Generator().manual_seed(0))
    plan = p.plan(1, table, {"prune_ratio": 0.8})
    assert sorted(plan.indices.tolist()) == kept
    assert plan.claimed_prune_ratio == 0.8


def test_all_equal_scores_prune_nothing_and_claim_zero():
    p = InfoBatchPruner()
    p.reset(50, 10, "cpu", torch.Generator().manual_seed(0))
    plan = p.plan(0, ScoreTable(50), {"prune_ratio": 0.5})  # epoch 0: every score starts equal
    assert sorted(plan.indices.tolist()) == list(range(50)) and torch.all(plan.weights == 1)
    assert plan.claimed_prune_ratio == 0.0


@pytest.mark.parametrize("epochs", list(range(1, 41)) + [100, 200, 300])
def test_schedule_prunes_exactly_the_official_epochs(epochs):
    env = PruningEnv(task="synthetic-mlp", pruner="infobatch", epochs=epochs)  # no run until reset
    for delta in [i / 100 for i in range(0, 101)] + [0.875, 0.29]:
        policy = make_policy("infobatch", env, delta=delta)
        ours = [policy.schedule(e)["prune_ratio"] > 0 for e in range(epochs)]
        official = [official_prunes(e, epochs, delta) for e in range(epochs)]
        assert ours == official, (epochs, delta)
        assert annealing_start(delta, epochs) == (official.index(False) if False in official else epochs)


def test_e100_delta029_prunes_28_epochs():
    """100 * 0.29 = 28.999999999999996: the official sampler prunes epochs 0-27 (the old epsilon gave 29)."""
    assert [official_prunes(e, 100, 0.29) for e in range(100)].count(True) == 28
    assert annealing_start(0.29, 100) == 28


def test_episode_claims_zero_on_epochs_that_prune_nothing():
    """Epoch 0 (all scores equal) and the annealing epochs prune nothing: claimed 0 in ``info``, beside the
    action's prune ratio."""
    env = PruningEnv(task="synthetic-mlp", pruner="infobatch", epochs=5, train_size=1000)
    policy = make_policy("infobatch", env)
    obs, _ = env.reset(seed=0)
    infos, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    # 5 * 0.875 = 4.375: epochs 0-3 prune (epoch 0 has nothing below the mean), epoch 4 anneals
    assert [i["prune_ratio"] for i in infos] == [0.5] * 4 + [0.0]
    assert [i["claimed_prune_ratio"] for i in infos] == [0.0, 0.5, 0.5, 0.5, 0.0]
    assert infos[0]["kept_fraction"] == 1.0 and infos[4]["kept_fraction"] == 1.0
