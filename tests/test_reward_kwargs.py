"""Reward parameters passed whole (issue 22): ``reward_kwargs`` reach the reward object, the flat env kwargs
(``compute_weight=``, ``lossless_penalty=``, ...) fold into them, records keep the flat form, and the env
attributes that only mirrored options are gone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO_ROOT, run_pinned

from prunegym.agents.evaluation.calibration import calibration_kwargs
from prunegym.envs import (
    LosslessReward,
    PruningEnv,
    PruningVectorEnv,
    RewardInput,
    TradeoffReward,
    make_reward,
    replay,
)
from prunegym.envs.rewards import DEFAULT_COMPUTE_WEIGHT, tradeoff_reward

pytestmark = pytest.mark.usefixtures("one_thread")

KW = dict(epochs=2, train_size=400)


def _return(env: PruningEnv, seed: int = 0) -> float:
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, r, term, trunc, _ = env.step(env.encode_action(0.5))
        total, done = total + r, term or trunc
    return total


def _vector_returns(venv: PruningVectorEnv) -> np.ndarray:
    venv.reset(seed=0)
    total = np.zeros(venv.num_envs)
    for _ in range(KW["epochs"]):
        _, r, _, _, _ = venv.step(np.stack([venv.encode_action(0.5)] * venv.num_envs))
        total += r
    return total


def test_reward_kwargs_reach_the_reward_like_the_flat_kwargs_in_both_envs():
    nested = PruningEnv(**KW, reward_kwargs={"compute_weight": 0.3})
    flat = PruningEnv(**KW, compute_weight=0.3)
    assert nested.reward.compute_weight == flat.reward.compute_weight == 0.3
    assert nested.options.reward_kwargs == flat.options.reward_kwargs == {"compute_weight": 0.3}
    assert nested.env_kwargs == flat.env_kwargs and nested.env_kwargs["compute_weight"] == 0.3
    assert _return(nested) == _return(flat) != _return(PruningEnv(**KW))
    lossless = PruningEnv(**KW, reward="lossless", reward_kwargs={"penalty": 5, "tolerance": 0.01})
    as_flat = PruningEnv(**KW, reward="lossless", lossless_penalty=5, lossless_tolerance=0.01)
    assert (lossless.reward.penalty, lossless.reward.tolerance) == (5.0, 0.01)
    assert lossless.env_kwargs == as_flat.env_kwargs and lossless.env_kwargs["lossless_penalty"] == 5

    v_nested = PruningVectorEnv(num_envs=2, **KW, reward_kwargs={"compute_weight": 0.3, "nonfinite_penalty": 2.0})
    v_flat = PruningVectorEnv(num_envs=2, **KW, compute_weight=0.3, nonfinite_penalty=2.0)
    assert [(r.compute_weight, r.nonfinite_penalty) for r in v_nested.rewards] == [(0.3, 2.0)] * 2
    assert v_nested.rewards[0] is not v_nested.rewards[1] and v_nested.env_kwargs == v_flat.env_kwargs
    got = _vector_returns(v_nested)
    np.testing.assert_array_equal(got, _vector_returns(v_flat))
    assert not np.array_equal(got, _vector_returns(PruningVectorEnv(num_envs=2, **KW)))


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(compute_weight=0.3, reward_kwargs={"compute_weight": 0.2}), r"compute_weight=0.3 and reward_kwargs\["),
        (dict(reward="lossless", lossless_penalty=1, reward_kwargs={"penalty": 2}), "lossless_penalty=1 and"),
        (
            dict(reward_kwargs={"penalty": 1}),
            r"\['penalty'\] are not parameters of reward 'tradeoff'; allowed: compute_weight, nonfinite_penalty$",
        ),
        (dict(reward="accuracy", reward_kwargs={"compute_weight": 1}), "allowed: nonfinite_penalty$"),
        (dict(reward=lambda r: 0.0, reward_kwargs={"compute_weight": 1}), "allowed: nonfinite_penalty$"),
        (dict(reward=TradeoffReward(), reward_kwargs={"compute_weight": 1}), "a Reward instance carries its own"),
        (dict(reward=TradeoffReward(compute_weight=0.2), compute_weight=0.3), "compute_weight=0.3 differs from"),
        (dict(reward_kwargs={"compute_weight": -1.0}), r"reward_kwargs\['compute_weight'\]=-1.0 must be"),
        (dict(reward_kwargs={"nonfinite_penalty": float("nan")}), "nonfinite_penalty'.=nan must be"),
        (dict(reward_kwargs=[("compute_weight", 1)]), "reward_kwargs=.* must be a dict"),
        (dict(reward="lossless", lossless_tolerance=-1), "lossless_tolerance=-1 must be"),
    ],
)
def test_conflicts_unknown_and_bad_parameters_are_one_line_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg) as err:
        PruningEnv(**KW, **kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=msg):
        PruningVectorEnv(num_envs=1, **KW, **kwargs)


def test_flat_kwargs_a_reward_does_not_take_stay_accepted_and_recorded():
    """Every record carries all four flat kwargs, whatever its reward: they must keep building the env."""
    env = PruningEnv(**KW, reward="accuracy", compute_weight=0.3, lossless_penalty=4, lossless_tolerance=0.0)
    assert env.options.reward_kwargs == {}
    assert {k: env.env_kwargs[k] for k in ("compute_weight", "lossless_penalty", "lossless_tolerance")} == {
        "compute_weight": 0.3,
        "lossless_penalty": 4,
        "lossless_tolerance": 0.0,
    }
    seen: list[float] = []
    callable_env = PruningEnv(**KW, reward=lambda r: seen.append(r.compute_weight) or 0.0, compute_weight=0.7)
    _return(callable_env)
    assert seen == [0.7, 0.7]  # RewardInput.compute_weight still carries compute_weight= to a callable


def test_tradeoff_reward_owns_its_weight_and_the_defaults_live_on_the_classes():
    r = RewardInput(0.8, 0.7, 0.1, 0.2, 0.9, False, compute_weight=5.0, reference_accuracy=0.9)
    for w in (0.0, 0.3, 2.0):
        assert TradeoffReward(compute_weight=w).step(r) == (0.8 - 0.7) - w * 0.2
        assert make_reward("tradeoff", compute_weight=w).step(r) == (0.8 - 0.7) - w * 0.2
    assert TradeoffReward().compute_weight == DEFAULT_COMPUTE_WEIGHT == 0.1
    assert tradeoff_reward(r) == (0.8 - 0.7) - 5.0 * 0.2  # the plain function prices with RewardInput's weight
    assert TradeoffReward(compute_weight=0.3).on_error(r) == (0.0 - 0.7) - 0.3 * 0.2 - 1.0
    lossless = LosslessReward()
    assert (lossless.penalty, lossless.tolerance) == (LosslessReward.DEFAULT_PENALTY, LosslessReward.DEFAULT_TOLERANCE)
    assert (LosslessReward.DEFAULT_PENALTY, LosslessReward.DEFAULT_TOLERANCE) == (10.0, 0.005)
    with pytest.raises(ValueError, match="allowed: nonfinite_penalty, penalty, tolerance"):
        make_reward("lossless", compute_weight=0.1)


def test_a_record_written_now_replays_and_records_keep_the_flat_form():
    env = PruningEnv(**KW, pruner="uniform", reward_kwargs={"compute_weight": 0.3, "nonfinite_penalty": 2.0})
    env.reset(seed=3)
    rewards, done = [], False
    while not done:
        _, r, term, trunc, info = env.step(env.encode_action(0.4))
        rewards.append(r)
        done = term or trunc
    record = json.loads(json.dumps(info["episode_record"]))
    assert "reward_kwargs" not in record["env_kwargs"]
    assert (record["env_kwargs"]["compute_weight"], record["env_kwargs"]["nonfinite_penalty"]) == (0.3, 2.0)
    assert replay(record).rewards == rewards


def test_a_committed_row_with_flat_reward_kwargs_replays_bit_for_bit(data_root):
    """A published results row (prunegym 0.2.0, flat ``compute_weight`` & co in its ``env_config``) replays to its
    return, test accuracy and compute, and an env given the same parameters as ``reward_kwargs`` records the
    very same ``env_config``."""
    path = REPO_ROOT / "benchmarks/results/agents/shipped_remeasured_results.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    config = row["env_config"]
    assert {"compute_weight", "lossless_penalty", "lossless_tolerance", "nonfinite_penalty"} <= set(config)
    nested = {k: v for k, v in config.items() if k not in ("compute_weight", "nonfinite_penalty")}
    nested["reward_kwargs"] = {"compute_weight": config["compute_weight"], "nonfinite_penalty": 1.0}
    assert PruningEnv(**nested).env_kwargs == config
    code = f"""
import json
from prunegym.envs import replay
row = json.loads(open({str(path)!r}).readline())
record = {{"env_kwargs": row["env_config"], "seed": row["seed"], "actions": row["actions"]}}
res = replay(record, data_root={str(data_root)!r})
print(json.dumps([res.episode_return, res.final_info["test_accuracy"], res.final_info["compute_fraction_total"]]))
"""
    got = json.loads(run_pinned(code).strip().splitlines()[-1])
    assert got == [row["episode_return"], row["test_accuracy"], row["compute_fraction"]]


MIRRORS = ("pruner_kwargs", "reward_name", "compute_weight", "record_wall_time", "max_wall_time", "nonfinite_penalty")


def test_the_attributes_that_mirrored_options_are_gone():
    env = PruningEnv(**KW, pruner="uniform", record_wall_time=True)
    venv = PruningVectorEnv(num_envs=2, **KW, pruner="uniform")
    for e in (env, venv, venv.sub_envs[0]):
        assert [name for name in (*MIRRORS, "knobs") if hasattr(e, name)] == []
        assert (e.pruner_name, e.max_prune_ratio, e.decision_interval, e.epochs) == ("uniform", 0.9, 1, 2)
        assert [k.name for k in e.codec.knobs] == ["rescale"]
    assert env.options.record_wall_time and env.reward.name == "tradeoff"


def test_reward_parameters_do_not_key_a_calibration():
    assert calibration_kwargs({"epochs": 3, "reward_kwargs": {"compute_weight": 0.2}}) == {"epochs": 3}
