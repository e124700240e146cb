"""The action wrappers of :mod:`prunegym.envs.wrappers`: ``DiscreteRatio``, ``interpolate_settings`` and
``ResidualAction`` (open loop, and re-planning the budget with ``track_budget``), on tiny synthetic episodes."""

from __future__ import annotations

import numpy as np
import pytest

from prunegym.baselines import make_policy
from prunegym.envs import DiscreteRatio, PruningEnv, ResidualAction
from prunegym.envs.wrappers import interpolate_settings

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = {"tilt": 0.5, "sharpness": 0.3, "rescale": 0.2, "greedy": 0.4}


def _env(budget=0.5, epochs=5):
    return PruningEnv(pruner="learned", compute_budget=budget, epochs=epochs, train_size=500)


def _play(env, act, seed=0):
    obs, info = env.reset(seed=seed)
    infos, done = [info], False
    while not done:
        obs, _, term, trunc, info = env.step(act(obs))
        infos.append(info)
        done = term or trunc
    return infos


def test_discrete_ratio_maps_indices_to_ratios_and_rejects_bad_ones():
    env = DiscreteRatio(PruningEnv(epochs=2, train_size=300), ratios=[0.0, 0.5])
    assert env.action_space.n == 2
    env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert info["prune_ratio"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"action 2 is outside Discrete\(2\)"):
        env.step(2)
    with pytest.raises(ValueError, match=r"ratios \[0.95\] are outside"):
        DiscreteRatio(PruningEnv(epochs=2, train_size=300), ratios=[0.95])


def test_interpolate_settings_is_linear_between_budgets_and_constant_beyond():
    table = {0.3: {"a": 0.0}, 0.7: {"a": 1.0}}
    assert interpolate_settings(table, 0.5) == {"a": pytest.approx(0.5)}
    assert interpolate_settings(table, 0.1) == {"a": 0.0} and interpolate_settings(table, 0.9) == {"a": 1.0}
    with pytest.raises(ValueError, match="at least one budget"):
        interpolate_settings({}, 0.5)


def test_residual_action_at_zero_is_the_base_policy_episode():
    base = _env()
    policy = make_policy("static_schedule", base, **SETTINGS)
    want = _play(base, lambda o: policy.predict(o)[0])
    wrapped = ResidualAction(_env(), "static_schedule", SETTINGS)
    got = _play(wrapped, lambda o: np.zeros(wrapped.action_space.shape, np.float32))
    assert [i["prune_ratio"] for i in got[1:]] == [i["prune_ratio"] for i in want[1:]]
    assert got[-1]["compute_fraction_total"] == want[-1]["compute_fraction_total"]


@pytest.mark.parametrize("push", [-1.0, 1.0])
def test_track_budget_spends_the_budget_whatever_the_corrections(push):
    """An agent that keeps asking for less (push=1: more pruning) or more (push=-1) compute than the plan:
    open loop, the episode under- or over-spends (the cap trims); re-planned, it ends at the budget."""
    budget = 0.5

    def act(env):
        def f(obs):
            a = np.zeros(env.action_space.shape, np.float32)
            a[0] = push * 0.5
            return a

        return f

    open_loop = ResidualAction(_env(budget), "static_schedule", SETTINGS)
    tracked = ResidualAction(_env(budget), "static_schedule", SETTINGS, track_budget=True)
    spent_open = _play(open_loop, act(open_loop))[-1]["compute_fraction_total"]
    infos = _play(tracked, act(tracked))
    spent = infos[-1]["compute_fraction_total"]
    assert spent <= budget + 1e-9
    if push > 0:  # pruning more than planned: open loop leaves budget unspent, tracking spends it
        assert spent_open < budget - 0.05
        assert spent == pytest.approx(budget, abs=0.02)
        assert infos[-1]["prune_ratio"] < infos[2]["prune_ratio"]  # the last epoch gets back what was saved
    else:  # pruning less: tracking prunes later epochs harder than the open-loop plan would
        assert spent == pytest.approx(budget, abs=0.02)


def test_residual_action_rejects_bad_arguments():
    env = _env()
    with pytest.raises(ValueError, match="unknown base policy 'nope'; allowed:"):
        ResidualAction(env, "nope")
    with pytest.raises(ValueError, match=r"scale=3.0 must be in \(0, 2\]"):
        ResidualAction(env, "static_schedule", scale=3.0)
    with pytest.raises(ValueError, match="track_budget=True needs a budget-planning base policy"):
        ResidualAction(PruningEnv(pruner="learned", epochs=3), "uniform", track_budget=True)
    with pytest.raises(ValueError, match="policy 'static_schedule' needs a budget: make the env with compute_budget"):
        ResidualAction(PruningEnv(pruner="learned", epochs=3), "static_schedule", {"0.3": SETTINGS})  # at once


def test_track_budget_needs_the_compute_used_feature_but_open_loop_does_not():
    names = ("epoch_fraction", "compute_budget", "budget_left")
    env = PruningEnv(pruner="learned", compute_budget=0.5, epochs=3, train_size=300, features=names)
    open_loop = ResidualAction(env, "static_schedule", SETTINGS)
    obs, _ = open_loop.reset(seed=0)
    open_loop.step(np.zeros(open_loop.action_space.shape, np.float32))  # no compute_used needed
    tracked = ResidualAction(env, "static_schedule", SETTINGS, track_budget=True)
    obs, _ = tracked.reset(seed=0)
    tracked.step(np.zeros(tracked.action_space.shape, np.float32))  # warm-up epoch: the plan's 1
    with pytest.raises(ValueError, match="needs feature compute_used"):
        tracked.step(np.zeros(tracked.action_space.shape, np.float32))


def test_residual_on_named_components_corrects_those_only():
    """``correct=["prune_ratio"]``: a 1-component action moves the keep schedule; the knobs stay the base's."""
    full = ResidualAction(_env(), "static_schedule", SETTINGS)
    keep_only = ResidualAction(_env(), "static_schedule", SETTINGS, correct=["prune_ratio"])
    assert keep_only.action_space.shape == (1,) and full.action_space.shape == (len(full.unwrapped.action_names),)
    assert keep_only.arguments["correct"] == ["prune_ratio"] and "correct" not in full.arguments
    assert keep_only.wrap_like(_env()).correct == ("prune_ratio",)
    for wrapped in (full, keep_only):
        wrapped.reset(seed=0)
    push = np.full(full.action_space.shape, 0.4, np.float32)
    a_full, a_keep = full.action(push), keep_only.action(np.array([0.4], np.float32))
    base = keep_only.base_action()
    assert a_keep[0] == pytest.approx(min(1.0, base[0] + 0.5 * 0.4))  # the ratio moves by scale * a
    assert np.array_equal(a_keep[1:], np.clip(base[1:], -1, 1))  # the knobs are the base's
    assert a_full[0] == pytest.approx(a_keep[0]) and not np.allclose(a_full[1:], a_keep[1:])
    zero = _play(keep_only, lambda o: np.zeros(1, np.float32))
    want = _play(ResidualAction(_env(), "static_schedule", SETTINGS), lambda o: np.zeros(full.action_space.shape))
    assert [i["prune_ratio"] for i in zero[1:]] == [i["prune_ratio"] for i in want[1:]]


def test_residual_on_named_components_rejects_unknown_or_repeated_names():
    for bad in (["ratio"], ["prune_ratio", "prune_ratio"], []):
        with pytest.raises(ValueError, match=r"must name distinct action components; allowed: prune_ratio, "):
            ResidualAction(_env(), "static_schedule", SETTINGS, correct=bad)
