"""SB3 on the batched vector env (prunegym.agents.sb3.batched_vec_env, ``vec_env="batched"``) and one batch of
evaluation episodes (prunegym.agents.evaluation.batched_episodes) against ``run_episode``.

Contract: ``BatchedVecEnv`` follows SB3's ``VecEnv`` semantics as ``DummyVecEnv`` over ``Monitor``-wrapped
``PruningEnv``s does (same run seeds per rank, ``terminal_observation``, ``TimeLimit.truncated``,
``reset_infos``, ``episode`` stats); rewards and observations agree within float rounding (``ACC_TOL``, see
tests/test_vector_env.py). ``run_batched_episodes`` returns ``run_episode``'s rows: identical identity,
kept fractions, compute, actions and records for rules that read no losses; metrics within float rounding.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from prunegym.agents.cli import main
from prunegym.agents.evaluation.batched_episodes import run_batched_episodes
from prunegym.agents.evaluation.episode import policy_spec, run_episode
from prunegym.agents.sb3.batched_vec_env import BatchedVecEnv
from prunegym.agents.sb3.train import train_agent
from prunegym.agents.sb3.vec_envs import VEC_ENVS, make_vec_env
from prunegym.envs import PruningVectorEnv

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
KW = {"epochs": 3, "train_size": 500, "val_size": 200, "test_size": 200, "pruner": "uniform"}
ACC_TOL = 2.0 / 200 + 1e-6
EXACT = (
    "env_id",
    "env_kwargs",
    "env_config",
    "policy",
    "policy_type",
    "policy_hparams",
    "agent_path",
    "seed",
    "compute_fraction",
    "kept_fraction",
    "prune_ratios",
    "kept_fractions",
    "epochs",
    "steps",
    "actions",
    "error",
)


def test_batched_vec_env_follows_dummy_vec_env():
    assert "batched" in VEC_ENVS
    dummy = make_vec_env(ENV, 3, 5, KW, vec_env="dummy")
    batched = make_vec_env(ENV, 3, 5, KW, vec_env="batched")
    assert isinstance(batched, BatchedVecEnv) and batched.observation_space == dummy.observation_space
    assert batched.action_space == dummy.action_space and batched.num_envs == 3
    np.testing.assert_allclose(batched.reset(), dummy.reset(), rtol=1e-3, atol=ACC_TOL)
    assert [i["seed"] for i in batched.reset_infos] == [i["seed"] for i in dummy.reset_infos]
    assert all(i["seed"] >= 1_000_000 for i in batched.reset_infos)  # the training seed range
    rng = np.random.default_rng(3)
    for step in range(7):
        a = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
        ob, rb, db, ib = batched.step(a)
        od, rd, dd, id_ = dummy.step(a)
        np.testing.assert_allclose(ob, od, rtol=1e-3, atol=ACC_TOL)
        np.testing.assert_allclose(rb, rd, atol=ACC_TOL)
        assert rb.dtype == rd.dtype and np.array_equal(db, dd)
        for x, y in zip(ib, id_):
            assert sorted(x) == sorted(y)  # PruningEnv's keys, plus terminal_observation, TimeLimit.truncated, episode
            if "episode" in y:
                assert x["episode"]["l"] == y["episode"]["l"]
                assert abs(x["episode"]["r"] - y["episode"]["r"]) <= 2 * ACC_TOL
                assert x["TimeLimit.truncated"] is False
                assert x["episode_record"]["seed"] == y["episode_record"]["seed"]
                np.testing.assert_allclose(
                    x["terminal_observation"], y["terminal_observation"], rtol=1e-3, atol=ACC_TOL
                )
        assert [i["seed"] for i in batched.reset_infos] == [i["seed"] for i in dummy.reset_infos]
        assert db.all() == (step % 3 == 2)
    assert batched.get_attr("pruner_name") == dummy.get_attr("pruner_name") == ["uniform"] * 3
    assert batched.get_attr("policy_context", indices=[1])[0].pruner == "uniform"
    assert (
        batched.env_method("encode_action", 0.5, indices=[2])[0].tolist()
        == dummy.env_method("encode_action", 0.5, indices=[2])[0].tolist()
    )
    assert batched.env_is_wrapped(Monitor) == dummy.env_is_wrapped(Monitor) == [True] * 3
    with pytest.raises(AttributeError, match="cannot set 'epochs'"):
        batched.set_attr("epochs", 3)
    batched.close()
    dummy.close()


def test_seed_and_set_options_apply_to_the_next_reset():
    venv = PruningVectorEnv(
        "synthetic-mlp",
        2,
        autoreset_mode="Disabled",
        compute_budget=(0.3, 0.6),
        **{k: v for k, v in KW.items() if k != "pruner"},
    )
    vec = BatchedVecEnv(venv)
    assert vec.seed(40) == [40, 41]
    vec.set_options({"compute_budget": 0.5})
    vec.reset()
    assert [i["seed"] for i in vec.reset_infos] == [40, 41]
    assert [i["compute_budget"] for i in vec.reset_infos] == [0.5] * 2
    vec.reset()  # seeds and options are used once (SB3): now drawn from each sub-env's generator
    assert [i["seed"] for i in vec.reset_infos] != [40, 41]
    vec.set_options({"bogus": 1})
    with pytest.raises(ValueError, match="unknown reset option"):
        vec.reset()
    with pytest.raises(ValueError, match="autoreset_mode='Disabled'"):
        BatchedVecEnv(PruningVectorEnv("synthetic-mlp", 2))
    with pytest.raises(ValueError, match="vec_env='batched' cannot apply an env wrapper"):
        make_vec_env(ENV, 2, 0, KW, wrapper=lambda e: e, vec_env="batched")
    with pytest.raises(ValueError, match="pruner='pfb'.*PruningEnv"):
        make_vec_env(ENV, 2, 0, {**KW, "pruner": "pfb"}, vec_env="batched")
    vec.close()


def test_ppo_trains_on_the_batched_env(tmp_path):
    agent = train_agent(
        "ppo",
        ENV,
        240,
        seed=0,
        env_kwargs={k: v for k, v in KW.items() if k != "pruner"},
        hyperparams={"n_steps": 12, "batch_size": 24, "n_epochs": 2},
        n_envs=4,
        out=tmp_path / "a",
        tensorboard_log=str(tmp_path / "tb"),
        eval_freq=0,
        vec_env="batched",
    )
    assert agent.meta["num_timesteps"] == 240 and agent.meta["episodes"] == 80 and agent.meta["n_envs"] == 4
    assert (tmp_path / "a" / "model.zip").is_file()
    kw = {k: v for k, v in KW.items() if k != "pruner"}
    row = run_episode(policy_spec(str(tmp_path / "a" / "model.zip")), ENV, kw, 0).row
    assert row.steps == 3 and math.isfinite(row.test_accuracy)


def test_cli_trains_with_vec_env_batched(tmp_path, capsys):
    out = tmp_path / "agent"
    assert (
        main(
            [
                "train",
                "--algo",
                "ppo",
                "--env",
                ENV,
                "--total-timesteps",
                "192",
                "--seed",
                "1",
                "--quiet",
                "--tensorboard-log",
                "",
                "--out",
                str(out),
                "--eval-freq",
                "0",
                "--vec-env",
                "batched",
                "--n-envs",
                "4",
                "--hyperparams",
                "n_steps=12",
                "batch_size=16",
                "n_epochs=1",
                "--env-kwargs",
                "epochs=3",
                "train_size=500",
                "val_size=200",
                "test_size=200",
            ]
        )
        == 0
    )
    assert "saved" in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    assert meta["num_timesteps"] == 192 and meta["n_envs"] == 4


@pytest.mark.parametrize("policy", ["uniform", "full", "infobatch"])
def test_batched_episodes_equal_run_episode_rows(policy):
    kw = {k: v for k, v in KW.items() if k != "pruner"}
    spec = policy_spec(policy)
    seeds = [4, 0, 9]
    batched = run_batched_episodes(spec, ENV, kw, seeds)
    for out, seed in zip(batched, seeds):
        ref = run_episode(spec, ENV, kw, seed)
        got, want = out.row.__dict__, ref.row.__dict__
        exact = (
            EXACT
            if policy != "infobatch"
            else ("env_id", "env_kwargs", "env_config", "policy", "seed", "steps", "epochs", "actions", "prune_ratios")
        )
        assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
        for key in ("test_accuracy", "val_accuracy", "episode_return"):
            assert abs(got[key] - want[key]) <= (ACC_TOL if policy != "infobatch" else 0.03), key
        assert math.isclose(got["test_loss"], want["test_loss"], rel_tol=1e-3 if policy != "infobatch" else 0.05)
        assert got["wall_clock_s"] > 0 and len(out.epochs) == len(ref.epochs)
        assert [e.keys() for e in out.epochs] == [e.keys() for e in ref.epochs]


def test_batched_episodes_of_a_saved_agent_and_errors(tmp_path):
    kw = {k: v for k, v in KW.items() if k != "pruner"}
    train_agent(
        "ppo",
        ENV,
        24,
        seed=0,
        env_kwargs=kw,
        hyperparams={"n_steps": 12, "batch_size": 12, "n_epochs": 1},
        n_envs=2,
        out=tmp_path / "a",
        tensorboard_log=None,
        eval_freq=0,
    )
    spec = policy_spec(str(tmp_path / "a" / "model.zip"))
    (b,) = run_batched_episodes(spec, ENV, kw, [2])
    ref = run_episode(spec, ENV, kw, 2)
    assert b.row.policy == ref.row.policy == "ppo_uniform" and b.row.agent_path == ref.row.agent_path
    np.testing.assert_allclose(b.row.actions, ref.row.actions, atol=1e-3)  # deterministic policy, close inputs
    assert b.row.steps == ref.row.steps == 3
    with pytest.raises(ValueError, match="at least one seed"):
        run_batched_episodes(spec, ENV, kw, [])
    with pytest.raises(ValueError, match="pruner='pfb'.*PruningEnv"):
        run_batched_episodes(policy_spec("pfb"), ENV, kw, [0])
