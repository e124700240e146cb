"""``RelativeReward`` (reward minus the base policy's on the same seed and budget) and the training seed pool
(``TrainingSeedStream(pool=...)``, the ``seed_pool`` / ``training_wrapper`` hyperparameters)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunegym.agents.env_factory import TRAIN_SEED_MIN, TrainingSeedStream
from prunegym.agents.sb3.hyperparams import make_wrapper, resolve_hyperparams
from prunegym.envs import PruningEnv, RelativeReward, ResidualAction

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = {"tilt": 0.5, "sharpness": 0.3, "rescale": 0.2, "greedy": 0.4}


def _residual(budget=(0.3, 0.7)):
    env = PruningEnv(pruner="learned", compute_budget=budget, epochs=4, train_size=400, reward="accuracy")
    return ResidualAction(env, "static_schedule", SETTINGS, track_budget=True)


def _play(env, push, seed):
    obs, info = env.reset(seed=seed)
    rewards, infos, done = [], [info], False
    while not done:
        a = np.full(env.action_space.shape, push, np.float32)
        obs, r, term, trunc, info = env.step(a)
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return rewards, infos


def test_zero_residual_earns_exactly_zero(tmp_path):
    env = RelativeReward(_residual(), cache=str(tmp_path))
    rewards, infos = _play(env, 0.0, seed=3)
    assert rewards == [0.0] * len(rewards)
    assert [i["reward_reference"] for i in infos[1:]] == [i["reward_absolute"] for i in infos[1:]]
    assert env.references_played == 1


def test_return_is_the_final_accuracy_gain_over_the_base_on_the_same_seed(tmp_path):
    env = RelativeReward(_residual(), cache=str(tmp_path))
    rewards, infos = _play(env, 0.6, seed=5)
    base = _residual()
    _, base_infos = _play(base, 0.0, seed=5)
    assert infos[0]["compute_budget"] == base_infos[0]["compute_budget"]  # same seed, same drawn budget
    gain = infos[-1]["val_accuracy"] - base_infos[-1]["val_accuracy"]
    assert sum(rewards) == pytest.approx(gain, abs=1e-9)
    assert infos[-1]["episode_return_relative"] == pytest.approx(gain, abs=1e-9)
    assert "episode_return_relative" not in infos[-2]
    assert any(r != 0.0 for r in rewards)  # the push changed the run


def test_reference_episodes_are_cached_per_seed_budget_and_base(tmp_path):
    env = RelativeReward(_residual(), cache=str(tmp_path))
    _play(env, 0.3, seed=1)
    _play(env, -0.3, seed=1)
    assert env.references_played == 1 and len(list(tmp_path.glob("*.json"))) == 1
    fresh = RelativeReward(_residual(), cache=str(tmp_path))  # a new process would read the file
    _play(fresh, 0.0, seed=1)
    _play(fresh, 0.0, seed=2)
    assert len(list(tmp_path.glob("*.json"))) == 2
    other = ResidualAction(
        PruningEnv(pruner="learned", compute_budget=(0.3, 0.7), epochs=4, train_size=400, reward="accuracy"),
        "static_schedule",
        {**SETTINGS, "tilt": -0.5},
        track_budget=True,
    )
    _play(RelativeReward(other, cache=str(tmp_path)), 0.0, seed=1)  # another base: another reference
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_a_corrupt_cache_entry_is_played_again(tmp_path):
    env = RelativeReward(_residual(0.5), cache=str(tmp_path))
    _play(env, 0.0, seed=8)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    from prunegym.envs import relative_reward

    relative_reward._MEMORY.clear()
    again = RelativeReward(_residual(0.5), cache=str(tmp_path))
    rewards, _ = _play(again, 0.0, seed=8)
    assert again.references_played == 1 and rewards == [0.0] * len(rewards)
    assert json.loads(entry.read_text())["key"]["seed"] == 8


def test_relative_reward_needs_a_residual_below():
    with pytest.raises(ValueError, match="RelativeReward needs a ResidualAction below it"):
        RelativeReward(PruningEnv(epochs=2, train_size=200))


def test_seed_pool_cycles_through_its_seeds_in_new_orders():
    stream = TrainingSeedStream([0, 1, 0], pool=4)
    seeds = [stream() for _ in range(12)]
    first = seeds[:4]
    assert len(set(first)) == 4 and all(s >= TRAIN_SEED_MIN for s in first)
    assert sorted(seeds[4:8]) == sorted(first) and sorted(seeds[8:]) == sorted(first)
    assert seeds[4:8] != seeds[8:] or seeds[4:8] != first  # reshuffled, not a fixed cycle
    unpooled = TrainingSeedStream([0, 1, 0])
    assert [unpooled() for _ in range(4)] == first  # the pool is the stream's first seeds
    assert len({unpooled() for _ in range(8)}) == 8
    with pytest.raises(ValueError, match="seed_pool=0 must be None or an int >= 1"):
        TrainingSeedStream([0], pool=0)


def test_training_wrapper_and_seed_pool_hyperparameters():
    hp = resolve_hyperparams(
        {"seed_pool": 24, "training_wrapper": "prunegym.envs.RelativeReward", "env_wrapper": None, "n_steps": 8}
    )
    assert hp.seed_pool == 24 and hp.training_wrapper == "prunegym.envs.RelativeReward"
    assert "seed_pool" not in hp.algo_kwargs and "training_wrapper" not in hp.algo_kwargs
    wrap = make_wrapper({"prunegym.envs.RelativeReward": {"cache": ""}})
    assert isinstance(wrap(_residual()), RelativeReward)
    with pytest.raises(ValueError, match="seed_pool=-2 must be an int >= 1"):
        resolve_hyperparams({"seed_pool": -2})


def test_training_applies_the_training_wrapper_and_the_agent_does_not(tmp_path, monkeypatch):
    """``train_agent`` trains on relative rewards over a 1-seed pool (one reference episode for the whole
    run, cached); the saved agent's env interface is the residual alone, so evaluating it plays no reference."""
    from prunegym.agents import load_agent, train_agent

    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    residual = {"prunegym.envs.ResidualAction": {"base": "static_schedule", "settings": SETTINGS, "track_budget": True}}
    kw = dict(pruner="learned", epochs=3, train_size=300, val_size=100, test_size=100, reward="accuracy")
    agent = train_agent(
        "ppo",
        "prunegym/Synthetic-MLP-v0",
        9,
        0,
        env_kwargs={**kw, "compute_budget": (0.4, 0.6)},
        hyperparams=dict(
            n_steps=3,
            batch_size=3,
            n_epochs=1,
            n_envs=1,
            env_wrapper=residual,
            training_wrapper="prunegym.envs.RelativeReward",
            seed_pool=1,
        ),
        out=tmp_path / "agent",
        tensorboard_log=tmp_path / "tb",
        eval_freq=0,
        checkpoint_freq=0,
    )
    assert agent.meta["training_wrapper"] == "prunegym.envs.RelativeReward" and agent.meta["seed_pool"] == 1
    assert len(list((tmp_path / "cache" / "relative").glob("*.json"))) == 1  # 3 episodes, one seed, one reference
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (tmp_path / "tb").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"episode/return", "episode/return_relative"} <= tags
    loaded = load_agent(tmp_path / "agent" / "model.zip")
    env = loaded.wrap_env(PruningEnv(**kw, compute_budget=0.5))
    assert isinstance(env, ResidualAction) and not isinstance(env, RelativeReward)


def test_a_base_that_cannot_drive_the_env_fails_before_training_starts(tmp_path):
    """Before, a wrong pruner surfaced at the first reset inside each subprocess worker, as an ``EOFError``."""
    from prunegym.agents import train_agent

    residual = {"prunegym.envs.ResidualAction": {"base": "static_schedule", "settings": SETTINGS}}
    with pytest.raises(ValueError, match="drives the 'learned' pruner, but the env was made with pruner='uniform'"):
        train_agent(
            "ppo",
            "prunegym/Synthetic-MLP-v0",
            4,
            0,
            env_kwargs=dict(epochs=2, train_size=200, compute_budget=0.5),
            hyperparams=dict(n_steps=2, batch_size=2, n_envs=2, env_wrapper=residual),
            out=tmp_path / "agent",
            tensorboard_log="",
            eval_freq=0,
        )
    assert not (tmp_path / "agent").exists()
    with pytest.raises(ValueError, match="drives the 'learned' pruner"):
        ResidualAction(PruningEnv(epochs=2, train_size=200, compute_budget=0.5), "static_schedule", SETTINGS)


def test_an_unwritable_cache_warns_once_and_the_episode_goes_on(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    env = RelativeReward(_residual(0.5), cache=str(blocker / "relative"))
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        rewards, _ = _play(env, 0.0, seed=11)
    assert rewards == [0.0] * len(rewards) and env.references_played == 1
    _play(env, 0.2, seed=11)  # from memory: no second reference episode
    assert env.references_played == 1


def test_the_reference_runs_to_its_end_when_the_agents_episode_is_cut_short(tmp_path):
    """Wall-clock options are not part of an episode's record, so the reference is never truncated: a
    ``max_wall_time`` that cuts the agent's episode short leaves a complete reference in the cache."""
    env = PruningEnv(pruner="learned", compute_budget=0.5, epochs=3, train_size=300, reward="accuracy", max_wall_time=0)
    wrapped = RelativeReward(ResidualAction(env, "static_schedule", SETTINGS), cache=str(tmp_path))
    rewards, _ = _play(wrapped, 0.0, seed=21)
    assert len(rewards) == 1  # the agent's episode was truncated after its first step
    (entry,) = tmp_path.glob("*.json")
    assert len(json.loads(entry.read_text())["rewards"]) == 3  # all 3 epochs of the base
