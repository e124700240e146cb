"""IES (Yuan et al., ICLR 2025) on hand-made loss histories against a re-implementation of the official rule
(tmllab/2025_ICLR_IES, ``cifar_main.py``: loss history, ``calculate_derivative``,
``correct_moving_average_new_new``, the exclusion test), written here from its logic: which samples leave and
come back; a sample without a new loss; the scoring compute of a whole episode; the schedule; and the
log-scale knob that carries the threshold."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prunegym.baselines import IESPruner, Knob, make_policy
from prunegym.envs import ActionCodec, PruningEnv

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the official rule, re-implemented from its logic ---------------------------------------------------------
def moving_average(data, window_size):
    """``correct_moving_average_new_new``: running sums of |d| over windows of ``window_size``."""
    abs_data = np.abs(data)
    window = sum(abs_data[:window_size])
    result = [window / window_size]
    for i in range(window_size, len(data)):
        window += abs_data[i] - abs_data[i - window_size]
        result.append(window / window_size)
    return result


def official_exclusions(losses, m, k, threshold, missing=None, keep_guard=True):
    """The sets excluded from each epoch's training. ``losses[e][i]``: the loss sample ``i`` has in epoch ``e``
    (trained, or scored while excluded); ``missing[e]``: samples that get no loss in epoch ``e``.
    ``keep_guard``: the official ``if excluded_samples:`` (an empty exclusion keeps the previous one)."""
    n = len(losses[0])
    history = {i: [] for i in range(n)}
    derivatives = {i: [] for i in range(n)}
    excluded_now: set[int] = set()
    out = []
    for e, row in enumerate(losses):
        out.append(set(excluded_now))
        for i in range(n):  # trained samples, then the excluded ones' extra forward pass: every sample
            if missing is None or i not in missing.get(e, ()):
                history[i].append(float(row[i]))
        for i, hist in history.items():
            if len(hist) >= 3:
                derivatives[i].append(hist[-1] - 2 * hist[-2] + hist[-3])
                if len(derivatives[i]) > m + k:
                    derivatives[i] = derivatives[i][-(m + k) :]
        excluded = [
            i
            for i, ds in derivatives.items()
            if len(ds) >= m + k and np.abs(moving_average(ds, m)[-k:]).sum() < threshold
        ]
        if excluded or not keep_guard:
            excluded_now = set(excluded)
    return out


def ours(losses, m=3, k=1, threshold=1e-3, missing=None):
    """Drive ``IESPruner`` with the same losses; returns its excluded sets and the pruner."""
    table = torch.as_tensor(np.asarray(losses), dtype=torch.float32)
    n = table.shape[1]
    p = IESPruner(m=m, k=k)
    p.reset(n, len(losses), "cpu", torch.Generator().manual_seed(0))
    out = []
    for e in range(len(losses)):
        plan = p.plan(e, None, {"prune_ratio": 0.0, "threshold": threshold})
        out_e = plan.score_after if plan.score_after is not None else torch.zeros(0, dtype=torch.int64)
        assert sorted(plan.indices.tolist() + out_e.tolist()) == list(range(n))  # trained or scored, once
        assert plan.claimed_prune_ratio == out_e.numel() / n and plan.weights is None
        out.append(set(out_e.tolist()))
        skip = torch.tensor(sorted((missing or {}).get(e, ())), dtype=torch.int64)
        trained = plan.indices[~torch.isin(plan.indices, skip)]
        scored = out_e[~torch.isin(out_e, skip)]
        p.update(
            SimpleNamespace(
                indices=trained,
                losses=table[e][trained],
                correct=torch.ones_like(trained).bool(),
                mixed=torch.zeros_like(trained).bool(),
                scored_indices=scored,
                scored_losses=table[e][scored],
            ),
            None,
        )
    return out, p


def hand_made(epochs: int = 14):
    """5 samples: constant; linear; quadratic (d = 0.02); constant, then a jump at epoch 8, constant again;
    alternating (|d| = 0.4)."""
    rows = []
    for e in range(epochs):
        rows.append([1.0, 2.0 - 0.1 * e, 0.01 * e * e, 0.5 if e < 8 else 1.5, 0.3 + 0.1 * (-1) ** e])
    return rows


def test_which_samples_leave_and_come_back():
    losses = hand_made()
    got, _ = ours(losses)
    assert got == official_exclusions(losses, 3, 1, 1e-3)
    # 3 losses after epoch 2, m + k = 4 differences after epoch 5: the first exclusion is epoch 6
    assert got[:6] == [set()] * 6
    assert got[6] == got[7] == got[8] == {0, 1, 3}
    # sample 3's scored loss jumps at the end of epoch 8 (d = 1): back in epoch 9; its |d| averages out after
    # epoch 12 (differences 1, -1, 0, 0, 0), so it leaves again in epoch 13
    assert got[9:13] == [{0, 1}] * 4 and got[13] == {0, 1, 3}


@pytest.mark.parametrize("m,k", [(3, 1), (2, 2), (1, 1), (4, 3)])
@pytest.mark.parametrize("threshold", [1e-3, 3e-2])
def test_random_histories_match_the_official_rule(m, k, threshold):
    g = np.random.default_rng(m * 10 + k)
    n, epochs = 60, 18
    base = g.uniform(0.1, 2.0, n)
    steps = np.where(g.random((epochs, n)) < 0.15, g.normal(0, 0.5, (epochs, n)), 0.0)
    drift = g.normal(0, threshold / 3, (epochs, n)) * (g.random(n) < 0.5)
    losses = np.abs(base + np.cumsum(steps, 0) + np.cumsum(drift, 0)).astype(np.float32)
    losses[:, 0] = 1.0  # one sample always mastered: the official guard never acts
    got, _ = ours(losses.tolist(), m, k, threshold)
    expected = official_exclusions(losses.tolist(), m, k, threshold)
    assert got == expected
    assert sum(len(s) for s in got) > epochs  # the grid excludes and re-admits samples
    assert any(a - b for a, b in zip(got, got[1:]))  # someone comes back


def test_a_sample_without_a_new_loss_still_gets_a_difference():
    """The official code appends a second difference from the unchanged last three losses of a sample that
    got no loss this epoch (here sample 1 misses epochs 3 and 4)."""
    losses = [[1.0, 1.0 + 0.3 * e * e] for e in range(10)]
    missing = {3: {1}, 4: {1}}
    got, p = ours(losses, missing=missing)
    assert got == official_exclusions(losses, 3, 1, 1e-3, missing=missing)
    assert int(p.num_losses[1]) == 8 and int(p.num_losses[0]) == 10
    _, p = ours(losses[:5], missing=missing)
    # after epoch 2 its losses are 1, 1.3, 2.2 (d = 0.6); epochs 3 and 4 append 0.6 again from the same three
    assert int(p.num_diffs[1]) == 3
    torch.testing.assert_close(p.diffs[1, 1:], torch.full((3,), 0.6, dtype=torch.float64))


def test_nothing_mastered_excludes_nothing():
    """Our one deviation, documented: when no sample is mastered the official guard keeps the previous
    exclusion; the stated rule (every sample re-judged each epoch) excludes nothing."""
    losses = [[1.0, 1.0]] * 7 + [[2.0, 3.0]] * 3
    got, _ = ours(losses)
    assert got[6] == {0, 1} and got[8] == set()
    assert got == official_exclusions(losses, 3, 1, 1e-3, keep_guard=False)
    assert official_exclusions(losses, 3, 1, 1e-3)[8] == {0, 1}  # the official guard's stale exclusion


def test_prune_ratio_is_ignored_and_the_threshold_decides():
    losses = hand_made(8)
    _, pa = ours(losses, threshold=1e-3)
    table = pa.judgement.clone()
    plan = pa.plan(8, None, {"prune_ratio": 0.9, "threshold": 1e-3})
    assert set(plan.score_after.tolist()) == {0, 1, 3}
    plan = pa.plan(8, None, {"prune_ratio": 0.0, "threshold": 1e-5})  # stricter threshold, same histories
    assert set(plan.score_after.tolist()) == set(torch.nonzero(table < 1e-5).view(-1).tolist())
    plan = pa.plan(8, None, {"prune_ratio": 0.0, "threshold": 0.1})
    assert set(plan.score_after.tolist()) == {0, 1, 2, 3}  # sample 2's |d| = 0.02 passes a looser threshold
    assert float(table[2]) == pytest.approx(0.02) and float(table[4]) == pytest.approx(0.4)


# -- a whole episode: scoring compute ---------------------------------------------------------------------------
def test_episode_charges_the_excluded_samples_forward_passes():
    env = PruningEnv(task="synthetic-mlp", pruner="ies", epochs=10, train_size=1000)
    policy = make_policy("ies", env, threshold=0.05)
    obs, _ = env.reset(seed=0)
    f = env.unwrapped.run.meter.flops
    n = env.unwrapped.run.num_train
    infos, done = [], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    excluded = [round(i["claimed_prune_ratio"] * n) for i in infos]
    assert excluded[:6] == [0] * 6 and sum(excluded[6:]) > 0
    for i, out in zip(infos, excluded):
        assert i["kept_fraction"] == pytest.approx(1 - out / n)
        assert i["flops_step"] == pytest.approx((n - out) * f.train_step + out * f.forward)
    assert infos[-1]["selector_compute_fraction_total"] == 0.0
    assert infos[-1]["test_accuracy"] > 0.5


def test_policy_schedule_and_defaults():
    env = PruningEnv(task="synthetic-mlp", pruner="ies", epochs=4)
    policy = make_policy("ies", env)
    assert policy.hparams == {"threshold": 1e-3}
    assert [policy.schedule(e) for e in range(4)] == [{"prune_ratio": 0.0, "threshold": 1e-3}] * 4
    action = policy.predict(np.zeros(len(env.feature_names), np.float32))[0]
    assert env.decode_action(action) == {"prune_ratio": 0.0, "threshold": 1e-3}
    with pytest.raises(ValueError, match="threshold=1.0 is out of range"):
        make_policy("ies", env, threshold=1.0)
    with pytest.raises(ValueError, match="m=0"):
        IESPruner(m=0)


# -- the log-scale knob -----------------------------------------------------------------------------------------
def test_log_scale_knob():
    knob = Knob("threshold", 1e-5, 1e-1, 1e-3, log=True)
    assert knob.decode(-1.0) == pytest.approx(1e-5) and knob.decode(1.0) == pytest.approx(1e-1)
    assert knob.decode(0.0) == pytest.approx(1e-3)  # the geometric middle
    assert knob.decode(-0.5) == pytest.approx(1e-4) and knob.decode(0.5) == pytest.approx(1e-2)
    for v in (1e-5, 3.7e-5, 1e-3, 0.02, 0.1):
        assert knob.decode(knob.encode(v)) == pytest.approx(v, rel=1e-12)
    assert knob.encode(1e-3) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        knob.encode(0.5)
    with pytest.raises(ValueError, match="0 < low"):
        Knob("bad", 0.0, 1.0, 0.5, log=True)
    codec = ActionCodec(0.9, (knob,))  # float32 round-off removed to 6 significant digits, not 6 decimals
    for v in (1e-5, 1.23456e-5, 1e-3, 0.0421):
        a = np.asarray(codec.encode(0.0, threshold=v), dtype=np.float32)
        assert codec.decode(a)["threshold"] == pytest.approx(v, rel=2e-6)
    assert codec.decode(np.asarray(codec.encode(0.0, threshold=1e-3), dtype=np.float32))["threshold"] == 1e-3
    linear = Knob("x", 0.0, 1.0, 0.5)
    assert linear.decode(0.0) == 0.5 and linear.encode(0.25) == -0.5  # the linear scale is unchanged
    assert not math.isnan(knob.rounded(1.234567891e-4))
