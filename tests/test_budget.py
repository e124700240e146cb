"""Compute budgets: plan pricing and trimming in the engine, ``compute_budget`` in the env, the ``accuracy``
reward and the budget features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prunegym.baselines import make_policy, make_pruner
from prunegym.envs import PruningEnv, replay
from prunegym.training import RunConfig, TrainingRun, plan_flops, step_run, trim_plan

pytestmark = pytest.mark.usefixtures("one_thread")


def small_run(**kw) -> TrainingRun:
    return TrainingRun(RunConfig(epochs=3, train_size=600, val_size=200, batch_size=64, **kw))


def make(**kw) -> PruningEnv:
    base = dict(epochs=4, train_size=600, batch_size=64)
    base.update(kw)
    return PruningEnv(**base)


def play(env: PruningEnv, action, seed: int = 0, options=None):
    obs, info = env.reset(seed=seed, options=options)
    obs_list, infos, rewards = [obs], [info], []
    done = False
    while not done:
        a = action(obs) if callable(action) else action
        obs, r, term, trunc, info = env.step(a)
        obs_list.append(obs)
        infos.append(info)
        rewards.append(r)
        done = term or trunc
    return obs_list, infos, rewards


# -- the engine: pricing and trimming ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pruner, action",
    [
        ("full", {"prune_ratio": 0.0}),
        ("uniform", {"prune_ratio": 0.5, "rescale": 1.0}),
        ("swdpp", {"prune_ratio": 0.4, "floor": 0.2, "mix_prob": 0.5}),
        ("pfb", {"prune_ratio": 0.5}),
        ("ies", {"prune_ratio": 0.0, "threshold": 0.05}),
    ],
)
def test_plan_flops_is_what_the_meter_charges(pruner, action):
    run = small_run()
    p = make_pruner(pruner)
    p.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
    for _ in range(run.epochs):
        plan = p.plan(run.epoch, run.scores, action)
        expected = plan_flops(run, plan)
        result = run.run_epoch(plan)
        p.update(result, run.scores)
        if pruner == "pfb" and run.epoch == 1:  # PFB's centres do not exist before its first batch: an upper bound
            assert result.flops <= expected
        else:
            assert result.flops == pytest.approx(expected, rel=1e-12)


def test_trim_plan_keeps_the_longest_prefix_that_fits():
    run = small_run()
    plan = run.full_plan()
    full = plan_flops(run, plan)
    same, dropped = trim_plan(run, plan, full)
    assert same is plan and dropped == 0
    per_row = run.meter.flops.train_step
    cut, dropped = trim_plan(run, plan, 100.5 * per_row)
    assert cut.indices.numel() == 100 and dropped == run.num_train - 100
    assert torch.equal(cut.indices, plan.indices[:100])
    assert plan_flops(run, cut) <= 100.5 * per_row
    empty, dropped = trim_plan(run, plan, 0.0)
    assert empty.indices.numel() == 0 and dropped == run.num_train
    result = run.run_epoch(empty)  # an empty epoch trains nothing and costs nothing
    assert result.flops == 0.0 and result.indices.numel() == 0


def test_step_run_with_a_cap_reports_what_it_dropped():
    run = small_run()
    p = make_pruner("full")
    p.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
    res = step_run(run, p, {"prune_ratio": 0.0}, max_flops=0.25 * run.meter.full_epoch_flops)
    assert res.extra["budget_trimmed"] == run.num_train - res.indices.numel()
    assert res.flops <= 0.25 * run.meter.full_epoch_flops * (1 + 1e-9)
    assert res.indices.numel() == math.floor(0.25 * run.num_train)


# -- the env ----------------------------------------------------------------------------------------------------
def test_budget_caps_the_episode_and_trims_the_plans():
    env = make(compute_budget=0.5)
    obs, infos, _ = play(env, env.encode_action(0.0))
    total = infos[-1]["compute_fraction_total"]
    assert total <= 0.5 + 1e-9 and total == pytest.approx(0.5, abs=1 / 600 / 4)
    trims = [i["budget_trimmed"] for i in infos[1:]]
    assert trims[0] == 0 and trims[1] == 0 and trims[2] == 600 - 0 and trims[3] == 600  # epochs 3, 4: nothing left
    assert [i["kept_fraction"] for i in infos[1:]] == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert infos[-1]["budget_left"] == pytest.approx(0.0, abs=1e-9)
    i_budget, i_left = env.feature_names.index("compute_budget"), env.feature_names.index("budget_left")
    assert [float(o[i_budget]) for o in obs] == pytest.approx([0.5] * 5)
    assert [float(o[i_left]) for o in obs] == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0], abs=1e-6)
    assert infos[0]["compute_budget"] == 0.5


def test_a_policy_within_its_budget_is_not_trimmed():
    env = make(pruner="uniform", compute_budget=0.8)
    policy = make_policy("uniform", env, prune_ratio=0.3)  # 1 + 3 * 0.7 = 3.1 of 4 epochs: 0.775
    _, infos, _ = play(env, lambda o: policy.predict(o)[0])
    assert all(i["budget_trimmed"] == 0 for i in infos[1:])
    assert infos[-1]["compute_fraction_total"] == pytest.approx(0.775, abs=1e-3)


def test_budget_range_is_drawn_seeded_recorded_and_replayed():
    env = make(pruner="uniform", compute_budget=(0.25, 0.8), epochs=3)
    budgets = []
    for seed in (1, 2, 1):
        _, info = env.reset(seed=seed)
        budgets.append(info["compute_budget"])
    assert budgets[0] == budgets[2] != budgets[1] and all(0.25 <= b <= 0.8 for b in budgets)
    env.reset()  # unseeded resets draw fresh budgets from the env's generator
    _, infos, rewards = play(env, env.encode_action(0.2), seed=None)
    record = infos[-1]["episode_record"]
    b = infos[0]["compute_budget"]
    assert record["compute_budget"] == b and infos[-1]["compute_fraction_total"] <= b + 1e-9
    again = replay(record)
    assert again.rewards == rewards
    assert again.final_info["compute_fraction_total"] == infos[-1]["compute_fraction_total"]
    assert again.final_info["val_accuracy"] == infos[-1]["val_accuracy"]


def test_reset_option_sets_one_episodes_budget():
    env = make(compute_budget=(0.25, 0.8), epochs=2)
    _, info = env.reset(seed=0, options={"compute_budget": 0.3})
    assert info["compute_budget"] == 0.3
    with pytest.raises(ValueError, match=r"compute_budget=1.5 must be a fraction in \(0, 1\]"):
        env.reset(seed=0, options={"compute_budget": 1.5})
    with pytest.raises(ValueError, match="unknown reset option.*budget; allowed: compute_budget"):
        env.reset(seed=0, options={"budget": 0.3})
    with pytest.raises(ValueError, match="needs an env made with compute_budget"):
        make(epochs=2).reset(seed=0, options={"compute_budget": 0.3})


@pytest.mark.parametrize("bad", [0.0, 1.2, -0.5, (0.5, 0.2), (0.0, 0.5), (0.2,), "half", True])
def test_bad_budgets_are_one_line_errors(bad):
    with pytest.raises(ValueError, match=r"compute_budget=.* must be a fraction b in \(0, 1\]") as exc:
        make(compute_budget=bad)
    assert "\n" not in str(exc.value)


def test_without_a_budget_the_observation_is_unchanged():
    plain, budgeted = make(), make(compute_budget=1.0)
    assert budgeted.feature_names == plain.feature_names + ("compute_budget", "budget_left")
    o1, _ = plain.reset(seed=3)
    o2, _ = budgeted.reset(seed=3)
    np.testing.assert_array_equal(o2[: len(o1)], o1)
    a = plain.encode_action(0.0)
    for _ in range(4):  # a budget of 1 never trims a full-data run: same episode
        o1, r1, *_ = plain.step(a)
        o2, r2, *_ = budgeted.step(a)
        np.testing.assert_array_equal(o2[: len(o1)], o1)
        assert r1 == r2
    with pytest.raises(ValueError, match="unknown feature.*'nope'"):
        make(features=("epoch_fraction", "nope"))
    picked = make(features=("epoch_fraction", "val_accuracy"))
    assert picked.observation_space.shape == (2,) and picked.reset(seed=0)[0].shape == (2,)


def test_accuracy_reward_telescopes_to_the_accuracy_gain():
    env = make(reward="accuracy", compute_budget=0.6, pruner="uniform")
    _, infos, rewards = play(env, env.encode_action(0.5))
    assert sum(rewards) == pytest.approx(infos[-1]["val_accuracy"] - infos[0]["val_accuracy"], abs=1e-12)
    for prev, info, r in zip(infos, infos[1:], rewards):
        assert r == pytest.approx(info["val_accuracy"] - prev["val_accuracy"], abs=1e-12)
