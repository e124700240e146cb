"""prunegym.agents: hyperparameter files, training (PPO, DQN, resume), the evaluation harness, results rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from prunegym.agents import ROW_FIELDS, EpisodeRow, append_rows, evaluate, load_agent, read_rows, train_agent
from prunegym.agents.env_factory import EVAL_SEED_START, TRAIN_SEED_MIN, canonical_env_id, env_label, module_env_id
from prunegym.agents.sb3.hyperparams import HYPERPARAMS_DIR, load_hyperparams, make_wrapper, resolve_hyperparams
from prunegym.envs import ENV_IDS, FEATURE_NAMES, TASKS, DiscreteRatio

REPO_ROOT = Path(__file__).resolve().parents[1]

ENV = "prunegym/Synthetic-MLP-v0"
KW = dict(epochs=4, train_size=500, val_size=200, test_size=200)
TINY_PPO = dict(n_steps=4, batch_size=4, n_epochs=1, n_envs=1)


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A PPO agent trained for 8 steps (two 4-epoch episodes) with checkpoints, held-out evaluation and TB."""
    root = tmp_path_factory.mktemp("ppo")
    agent = train_agent(
        "ppo",
        ENV,
        8,
        0,
        env_kwargs=KW,
        hyperparams=TINY_PPO,
        out=root / "agent",
        tensorboard_log=root / "runs",
        eval_freq=8,
        n_eval_episodes=1,
        checkpoint_freq=4,
    )
    return root, agent


# -- hyperparameter files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ppo", "a2c", "sac", "td3", "dqn"])
def test_hyperparameter_files_are_zoo_format_and_cover_every_env(algo):
    table = yaml.safe_load((HYPERPARAMS_DIR / f"{algo}.yml").read_text())
    assert set(ENV_IDS) <= set(table)
    for env_id, entry in table.items():
        assert {"n_timesteps", "policy", "normalize", "policy_kwargs"} <= set(entry)
        assert isinstance(entry["policy_kwargs"], str)  # zoo: a Python expression string
        hp = resolve_hyperparams(load_hyperparams(algo, env_id))
        assert hp.normalize and hp.normalize_kwargs["norm_obs"] and hp.n_timesteps > 0
        episode = TASKS[ENV_IDS[env_id][0]].epochs
        if algo in ("ppo", "a2c"):  # rollouts hold whole episodes
            assert entry["n_steps"] % episode == 0 or episode % entry["n_steps"] == 0
        if algo == "ppo":
            assert (entry["n_steps"] * entry["n_envs"]) % entry["batch_size"] == 0
        if algo == "dqn":
            assert entry["env_wrapper"] == "prunegym.envs.DiscreteRatio"


def test_zoo_values_are_interpreted_like_the_zoo():
    hp = resolve_hyperparams(load_hyperparams("dqn", ENV, {"learning_rate": "lin_1e-3", "train_freq": [1, "episode"]}))
    assert hp.algo_kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert hp.algo_kwargs["train_freq"] == (1, "episode")
    assert hp.algo_kwargs["policy_kwargs"] == {"net_arch": [64, 64]}
    assert hp.normalize_kwargs == {"norm_obs": True, "norm_reward": False, "gamma": 0.99}
    import gymnasium as gym

    env = make_wrapper(hp.env_wrapper)(gym.make(ENV, **KW))
    assert isinstance(env, DiscreteRatio)
    with pytest.raises(ValueError, match="allowed: prunegym/Synthetic-MLP-v0"):
        load_hyperparams("ppo", "prunegym/Nope-v0")


def test_env_ids_and_seed_ranges():
    assert canonical_env_id("prunegym.envs:" + ENV) == ENV
    assert module_env_id(ENV) == "prunegym.envs:" + ENV  # usable by forkserver workers
    assert env_label(ENV) == "prunegym_Synthetic-MLP-v0"
    assert EVAL_SEED_START < TRAIN_SEED_MIN
    with pytest.raises(ValueError, match="allowed: prunegym/Synthetic-MLP-v0"):
        canonical_env_id("prunegym/Nope-v0")


# -- training ---------------------------------------------------------------------------------------------------
def test_ppo_trains_saves_and_evaluates_from_the_saved_file(ppo_run, tmp_path):
    root, agent = ppo_run
    out = root / "agent"
    for name in (
        "model.zip",
        "model.json",
        "vecnormalize.pkl",
        "best_model.zip",
        "best_model.json",
        "checkpoints/ppo_4_steps.zip",
        "checkpoints/ppo_8_steps.zip",
        "checkpoints/ppo_vecnormalize_8_steps.pkl",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "model.json").read_text())
    assert meta["algo"] == "ppo" and meta["num_timesteps"] == 8 and meta["env_kwargs"]["pruner"] == "uniform"
    assert meta["obs_normalizer"] is not None and len(meta["obs_normalizer"]["mean"]) == len(FEATURE_NAMES)
    assert meta["eval_seeds"] == [EVAL_SEED_START]
    loaded = load_agent(out / "model.zip")
    assert loaded.algo == "ppo" and loaded.env_interface() == {"pruner": "uniform"}
    results = tmp_path / "results.jsonl"
    rows = evaluate(str(out / "model.zip"), ENV, [0, 1], results=results, **KW)
    assert [r["seed"] for r in rows] == [0, 1]
    assert read_rows(results) == rows
    for row in rows:
        assert tuple(row) == ROW_FIELDS
        assert (
            row["policy"] == "ppo_uniform"
            and row["policy_type"] == "agent"
            and row["env_config"]["pruner"] == "uniform"
        )
        assert row["policy_hparams"]["n_steps"] == 4 and row["agent_path"].endswith("model.zip")
        assert len(row["prune_ratios"]) == len(row["kept_fractions"]) == row["epochs"] == 4
        assert 0 < row["compute_fraction"] <= 1 and 0 <= row["test_accuracy"] <= 1
        assert row["kept_fraction"] == pytest.approx(np.mean(row["kept_fractions"]))


def test_checkpoints_load_as_agents_with_their_own_statistics(ppo_run, tmp_path):
    """A trainer checkpoint evaluates like a saved agent: meta from its state (or the run's model.json for
    checkpoints without it), observation statistics from its own vecnormalize file, label ``<name>@<N>``."""
    import pickle
    import shutil

    from prunegym.agents.sb3.agent import agent_label

    root, _ = ppo_run
    ckpt = root / "agent" / "checkpoints" / "ppo_4_steps.zip"
    assert agent_label(ckpt) == "ppo_uniform@4"
    agent = load_agent(ckpt)
    assert agent.algo == "ppo" and agent.name == "ppo_uniform@4" and agent.meta["num_timesteps"] == 4
    assert agent.env_interface() == {"pruner": "uniform"}
    with open(root / "agent" / "checkpoints" / "ppo_vecnormalize_4_steps.pkl", "rb") as f:
        vn = pickle.load(f)
    final = load_agent(root / "agent" / "model.zip")
    assert np.allclose(agent.obs_normalizer.mean, vn.obs_rms.mean)
    assert not np.allclose(agent.obs_normalizer.mean, final.obs_normalizer.mean)  # 4 steps, not 8
    row = evaluate(str(ckpt), ENV, [0], results=tmp_path / "r.jsonl", **KW)[0]
    assert row["policy"] == "ppo_uniform@4" and row["policy_type"] == "agent" and row["epochs"] == 4

    # a checkpoint whose state has no agent meta falls back to the run's model.json one folder up
    copy = tmp_path / "run"
    shutil.copytree(root / "agent", copy)
    state_path = copy / "checkpoints" / "ppo_4_steps.json"
    state = json.loads(state_path.read_text())
    assert state["agent"]["name"] == "ppo_uniform"
    state.pop("agent")
    state_path.write_text(json.dumps(state))
    assert load_agent(copy / "checkpoints" / "ppo_4_steps.zip").name == "ppo_uniform@4"
    for meta in ("model.json", "best_model.json"):
        (copy / meta).unlink()
    with pytest.raises(ValueError, match="neither a saved agent's meta"):
        load_agent(copy / "checkpoints" / "ppo_4_steps.zip")


def test_training_run_has_sb3_and_episode_tags(ppo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = ppo_run
    acc = EventAccumulator(str(root / "runs" / env_label(ENV) / "ppo" / "seed0"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"episode/test_accuracy", "episode/compute_fraction_total", "episode/return", "eval/mean_reward"} <= tags
    assert any(t.startswith("rollout/") for t in tags) and any(t.startswith("train/") for t in tags)
    assert [e.step for e in acc.Scalars("episode/return")] == [0, 1]  # x = episode


def test_evaluate_twice_gives_identical_rows_except_wall_clock(ppo_run, tmp_path):
    _, agent = ppo_run
    for policy in (agent.path, "uniform"):
        a = evaluate(policy, ENV, [3], results=tmp_path / "r.jsonl", **KW)[0]
        b = evaluate(policy, ENV, [3], results=tmp_path / "r.jsonl", **KW)[0]
        a.pop("wall_clock_s"), b.pop("wall_clock_s")
        assert a == b
    assert len(read_rows(tmp_path / "r.jsonl")) == 4


def test_resume_continues_from_the_checkpoint_after_an_interruption(tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 6:
                raise KeyboardInterrupt
            return True

    out = tmp_path / "agent"
    with pytest.raises(KeyboardInterrupt):
        train_agent(
            "ppo",
            ENV,
            12,
            0,
            env_kwargs=KW,
            hyperparams=TINY_PPO,
            out=out,
            eval_freq=0,
            checkpoint_freq=0,
            callbacks=[Interrupt()],
        )
    assert (out / "checkpoints" / "ppo_6_steps.zip").is_file()  # saved on interruption
    assert not (out / "model.zip").exists()
    with pytest.raises(ValueError, match="resume=True"):
        train_agent("ppo", ENV, 12, 0, env_kwargs=KW, hyperparams=TINY_PPO, out=out, eval_freq=0)
    agent = train_agent(
        "ppo", ENV, 12, 0, env_kwargs=KW, hyperparams=TINY_PPO, out=out, eval_freq=0, checkpoint_freq=0, resume=True
    )
    # 6 restored + two rollouts of 4: the counter continued (a fresh start would stop at 12)
    assert agent.meta["resumed_from"] == 6
    assert agent.model.num_timesteps == 14
    assert json.loads((out / "model.json").read_text())["num_timesteps"] == 14
    assert (out / "checkpoints" / "ppo_14_steps.zip").is_file()


def test_dqn_runs_through_the_discrete_wrapper(tmp_path):
    from gymnasium import spaces

    agent = train_agent(
        "dqn",
        ENV,
        8,
        0,
        env_kwargs=KW,
        out=tmp_path / "dqn",
        eval_freq=0,
        checkpoint_freq=4,
        hyperparams=dict(learning_starts=2, batch_size=4, buffer_size=100, target_update_interval=4),
    )
    assert isinstance(agent.model.action_space, spaces.Discrete) and agent.model.action_space.n == 10
    assert agent.meta["env_wrapper"] == "prunegym.envs.DiscreteRatio"
    assert (tmp_path / "dqn" / "checkpoints" / "dqn_replay_buffer_8_steps.pkl").is_file()
    assert not (tmp_path / "dqn" / "checkpoints" / "dqn_replay_buffer_4_steps.pkl").exists()  # newest only
    resumed = train_agent(
        "dqn",
        ENV,
        10,
        0,
        env_kwargs=KW,
        out=tmp_path / "dqn",
        eval_freq=0,
        resume=True,
        hyperparams=dict(learning_starts=2, batch_size=4, buffer_size=100, target_update_interval=4),
    )
    assert resumed.meta["resumed_from"] == 8 and resumed.model.replay_buffer.size() == 10  # buffer restored
    row = evaluate(tmp_path / "dqn" / "model.zip", ENV, [0], results=None, **KW)[0]
    assert row["policy"] == "dqn_uniform"
    for r in row["prune_ratios"]:
        assert r == pytest.approx(round(r, 1), abs=1e-6)  # one of 0, 0.1, ..., 0.9


# -- harness ----------------------------------------------------------------------------------------------------
def test_policy_errors_name_the_allowed_values(tmp_path):
    from prunegym.baselines import POLICIES

    with pytest.raises(ValueError, match=f"allowed: {', '.join(POLICIES)}"):
        evaluate("nope", ENV, [0], results=None, **KW)
    with pytest.raises(FileNotFoundError, match="no saved agent at .*missing.zip"):
        evaluate(str(tmp_path / "missing.zip"), ENV, [0], results=None, **KW)
    with pytest.raises(ValueError, match="needs pruner='uniform'"):
        evaluate("uniform", ENV, [0], results=None, pruner="full", **KW)
    with pytest.raises(ValueError, match="no hyperparameter"):
        evaluate("uniform", ENV, [0], results=None, hparams={"bogus": 1}, **KW)
    assert not (tmp_path / "results.jsonl").exists()


def test_results_jsonl_appends_atomically(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    row = {name: None for name in ROW_FIELDS} | {"policy": "x", "seed": 1, "value": float("nan")}
    append_rows(path, [row])
    append_rows(path, [row, EpisodeRow.from_dict(row)])
    rows = read_rows(path)
    assert len(rows) == 3 and rows[0]["policy"] == "x"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.jsonl"]  # no temporary or lock files
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(ValueError, match="results.jsonl:4"):
        read_rows(path)


def test_custom_policy_objects_run_through_the_same_harness():
    class Half:
        name = "half"
        hparams = {"r": 0.5}

        def __init__(self, env):
            self.a = env.unwrapped.encode_action(prune_ratio=0.5)

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return self.a, state

    import gymnasium as gym

    policy = Half(gym.make(ENV, pruner="uniform", **KW))
    row = evaluate(policy, ENV, [0], results=None, pruner="uniform", **KW)[0]
    assert row["policy"] == "half" and row["policy_type"] == "custom" and row["policy_hparams"] == {"r": 0.5}
    assert row["prune_ratios"] == pytest.approx([0.5] * 4)


# -- shipped agents ---------------------------------------------------------------------------------------------
def test_pretrained_prefix_resolves_shipped_agents(ppo_run, tmp_path, monkeypatch):
    import shutil

    from prunegym.agents.sb3 import pretrained

    _, agent = ppo_run
    src = Path(agent.path)
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    shutil.copy(src, tmp_path / "tiny.zip")
    shutil.copy(src.with_suffix(".json"), tmp_path / "tiny.json")
    assert pretrained.pretrained_names() == ["tiny"]
    rows = evaluate("pretrained:tiny", ENV, [0], results=None, **KW)
    direct = evaluate(str(src), ENV, [0], results=None, **KW)
    assert rows[0]["test_accuracy"] == direct[0]["test_accuracy"] and rows[0]["actions"] == direct[0]["actions"]
    with pytest.raises(ValueError, match="allowed: tiny"):
        evaluate("pretrained:nope", ENV, [0], results=None, **KW)


@pytest.mark.parametrize("name", __import__("prunegym.agents.sb3.pretrained", fromlist=["x"]).pretrained_names())
def test_shipped_agents_fit_their_env(name):
    """A shipped agent must still fit the env it was trained on (observation features, action knobs)."""
    import gymnasium as gym

    from prunegym.agents import load_agent
    from prunegym.agents.sb3.pretrained import pretrained_path

    agent = load_agent(pretrained_path(name))
    kwargs = {k: v for k, v in agent.meta["env_kwargs"].items()}
    budget = kwargs.get("compute_budget")  # a budget agent observes the budget features
    env = agent.wrap_env(
        gym.make(
            "prunegym.envs:prunegym/Synthetic-MLP-v0",
            pruner=kwargs.get("pruner", "full"),
            epochs=2,
            train_size=500,
            **({"compute_budget": tuple(budget) if isinstance(budget, list) else budget} if budget else {}),
        )
    )
    assert agent.model.observation_space.shape == env.observation_space.shape
    assert agent.model.action_space.shape == env.action_space.shape
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    env.step(action)


def test_shipped_budget_agent_reproduces_its_heldout_row(data_root, tmp_path):
    """``evaluate --reproduce --policy pretrained:budget_fmnist_mlp`` replays the published held-out row (seed 7000
    at budget 0.3, BENCHMARKS.md issue 16) exactly: same test accuracy, compute and actions, under the float path
    and thread count the agent records (AVX2, one thread), on AVX2 and AVX-512 CPUs alike."""
    import json
    import os
    import subprocess
    import sys

    from prunegym.agents.sb3.pretrained import pretrained_path

    recorded = json.loads(pretrained_path("budget_fmnist_mlp").with_suffix(".json").read_text())["runtime"]
    assert (recorded["float_path"], recorded["torch_threads"]) == ("AVX2", 1)
    published = next(
        r
        for r in map(json.loads, (REPO_ROOT / "benchmarks/results/budget/heldout_results.jsonl").open())
        if r["policy"] == "budget_agent" and r["seed"] == 7000 and r["env_kwargs"].get("compute_budget") == 0.3
    )
    kv = [f"{k}={v!r}" for k, v in published["env_kwargs"].items()] + [f"data_root={str(data_root)!r}"]
    out = tmp_path / "rows.jsonl"
    cmd = [sys.executable, "-m", "prunegym.agents", "evaluate", "--reproduce", "--policy"]
    cmd += ["pretrained:budget_fmnist_mlp", "--env", "prunegym/FashionMNIST-MLP-v0", "--seeds", "7000"]
    cmd += ["--results", str(out), "--quiet", "--env-kwargs", *kv]
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "PRUNEGYM_FLOAT_PATH")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode == 2 and "cannot be forced" in proc.stderr:
        pytest.skip(proc.stderr.strip())  # a CPU without AVX2
    assert proc.returncode == 0, proc.stderr
    (row,) = read_rows(out)
    assert row["runtime"]["float_path"] == "AVX2" and row["runtime"]["torch_threads"] == 1
    assert row["compute_fraction"] == published["compute_fraction"]
    assert row["test_accuracy"] == published["test_accuracy"]
    assert row["actions"] == published["actions"]


# -- every algo trains (issue 12: only their YAML used to be read) ---------------------------------------------
@pytest.mark.parametrize(
    "algo, hp",
    [
        ("a2c", dict(n_steps=2, n_envs=1)),
        ("sac", dict(learning_starts=2, batch_size=4, buffer_size=100)),
        ("td3", dict(learning_starts=2, batch_size=4, buffer_size=100)),
    ],
)
def test_a2c_sac_td3_train_with_their_zoo_settings_save_and_evaluate(algo, hp, tmp_path):
    import torch
    from stable_baselines3.common.noise import NormalActionNoise

    out = tmp_path / algo
    agent = train_agent(algo, ENV, 8, 0, env_kwargs=KW, hyperparams=hp, out=out, eval_freq=0, checkpoint_freq=0)
    model = agent.model
    assert model.num_timesteps == 8 and type(model).__name__ == algo.upper()
    assert model.policy.net_arch == ([64, 64] if algo != "a2c" else {"pi": [64, 64], "vf": [64, 64]})
    if algo == "td3":  # the zoo's noise keys became TD3's action noise
        assert isinstance(model.action_noise, NormalActionNoise)
        assert np.allclose(model.action_noise._sigma, 0.2)
    if algo == "sac":  # 'auto_0.001': learned entropy coefficient starting at 0.001
        assert model.ent_coef == "auto_0.001"
        assert float(torch.exp(model.log_ent_coef.detach())) == pytest.approx(0.001, rel=0.05)
    if algo in ("sac", "td3"):  # gradient steps ran after learning_starts
        assert model._n_updates > 0
    else:
        assert model._n_updates == 4  # 8 steps / n_steps 2
    assert (out / "model.zip").is_file() and (out / "vecnormalize.pkl").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert meta["algo"] == algo and meta["obs_normalizer"] is not None
    loaded = load_agent(out / "model.zip")
    a = evaluate(str(out / "model.zip"), ENV, [0], results=None, **KW)[0]
    assert a["policy"] == f"{algo}_uniform" and a["steps"] == KW["epochs"] and a["error"] is None
    obs = np.zeros(len(FEATURE_NAMES), np.float32)
    assert np.array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])


def test_evaluate_takes_an_sb3_model_and_an_agent_object_like_its_file(ppo_run):
    _, agent = ppo_run
    from_file = evaluate(agent.path, ENV, [0], results=None, **KW)[0]
    loaded = load_agent(agent.path)
    from_agent = evaluate(loaded, ENV, [0], results=None, **KW)[0]
    assert from_agent["policy"] == "ppo_uniform" and from_agent["policy_type"] == "agent"
    assert from_agent["actions"] == from_file["actions"] and from_agent["test_accuracy"] == from_file["test_accuracy"]
    assert from_agent["policy_hash"] == from_file["policy_hash"]  # the same file
    # a bare SB3 model: no observation statistics and no recorded pruner, so the caller names the pruner
    bare = evaluate(loaded.model, ENV, [0], results=None, pruner="uniform", **KW)[0]
    assert bare["policy"] == "ppo" and bare["policy_type"] == "agent" and bare["steps"] == KW["epochs"]
    direct = [loaded.model.predict(np.asarray(o, np.float32), deterministic=True)[0] for o in _observations(bare)]
    assert bare["actions"] == [np.clip(np.asarray(a, np.float64), -1, 1).tolist() for a in direct]
    assert bare["policy_hash"] != from_file["policy_hash"]  # a hash of its parameters, without the statistics


def _observations(row):
    """The observations of the episode of ``row`` (replayed from its actions)."""
    import gymnasium as gym

    env = gym.make(ENV, **row["env_config"])
    obs, _ = env.reset(seed=row["seed"])
    out = [obs]
    for a in row["actions"][:-1]:
        obs, *_ = env.step(np.asarray(a))
        out.append(obs)
    return out


def test_train_with_subproc_vec_env_learns_what_dummy_vec_env_learns(tmp_path, capsys):
    import torch

    from prunegym.agents.cli import main

    argv = [
        "train",
        "--algo",
        "ppo",
        "--env",
        ENV,
        "--total-timesteps",
        "8",
        "--n-envs",
        "2",
        "--vec-env",
        "subproc",
        "--quiet",
        "--tensorboard-log",
        "",
        "--out",
        str(tmp_path / "sub"),
        "--eval-freq",
        "0",
        "--hyperparams",
        "n_steps=4",
        "batch_size=4",
        "n_epochs=1",
        "--env-kwargs",
        *[f"{k}={v}" for k, v in KW.items()],
    ]
    assert main(argv) == 0 and "saved" in capsys.readouterr().out
    meta = json.loads((tmp_path / "sub" / "model.json").read_text())
    assert meta["num_timesteps"] == 8 and meta["runtime"]["vec_env"] == "subproc"
    dummy = train_agent(
        "ppo",
        ENV,
        8,
        0,
        env_kwargs=KW,
        n_envs=2,
        vec_env="dummy",
        out=tmp_path / "dummy",
        eval_freq=0,
        hyperparams=dict(n_steps=4, batch_size=4, n_epochs=1),
    )
    a, b = load_agent(tmp_path / "sub" / "model.zip").model.policy.state_dict(), dummy.model.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_append_is_atomic_under_a_failed_replace_and_concurrent_writers(tmp_path, monkeypatch):
    """A write that fails before its ``os.replace`` leaves the file exactly as it was (a plain append would have
    added the line), and two processes appending at once keep every row."""
    import os
    import subprocess
    import sys

    path = tmp_path / "results.jsonl"
    row = {name: None for name in ROW_FIELDS} | {"policy": "x", "seed": 1}
    append_rows(path, [row])
    before, inode = path.read_bytes(), path.stat().st_ino

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        append_rows(path, [row | {"seed": 2}])
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]
    append_rows(path, [row | {"seed": 3}])
    assert path.stat().st_ino != inode  # rewritten and moved into place, not appended to in place
    code = (
        "import sys; from prunegym.agents.evaluation.results import append_rows\n"
        "for i in range(40): append_rows(sys.argv[1], [{'policy': sys.argv[2], 'seed': i, 'env_id': 'e'}])"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = read_rows(path)
    assert len(rows) == 2 + 80 and {(r["policy"], r["seed"]) for r in rows[2:]} == {
        (p, i) for p in "ab" for i in range(40)
    }


def test_cli_train_interrupt_exits_130_with_the_resume_command(tmp_path, capsys):
    from stable_baselines3.common.callbacks import BaseCallback

    from prunegym.agents import cli
    from prunegym.agents.cli import main

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 2:
                raise KeyboardInterrupt
            return True

    real = cli.train_agent  # the trainer the command calls
    argv = [
        "train",
        "--algo",
        "ppo",
        "--env",
        ENV,
        "--total-timesteps",
        "8",
        "--quiet",
        "--tensorboard-log",
        "",
        "--out",
        str(tmp_path / "a"),
        "--eval-freq",
        "0",
        "--hyperparams",
        "n_steps=2",
        "batch_size=2",
        "n_epochs=1",
        "n_envs=1",
        "--env-kwargs",
        *[f"{k}={v}" for k, v in KW.items()],
    ]
    cli.train_agent = lambda *a, **k: real(*a, **{**k, "callbacks": [Interrupt()]})
    try:
        assert main(argv) == 130
    finally:
        cli.train_agent = real
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("prunegym train: interrupted; a checkpoint was saved; continue with: prunegym train ")
    assert err.rstrip().endswith("--resume") and (tmp_path / "a" / "checkpoints" / "ppo_2_steps.zip").is_file()
    assert main(argv + ["--resume"]) == 0
    assert json.loads((tmp_path / "a" / "model.json").read_text())["num_timesteps"] >= 8  # whole rollouts
