"""PruningEnv on the synthetic task: spaces, actions, episode structure, rewards, determinism, replay, errors."""

from __future__ import annotations

import json
import math

import gymnasium
import numpy as np
import pytest

import prunegym.envs as E
from prunegym.baselines import make_policy
from prunegym.envs import ENV_IDS, FEATURE_NAMES, NONFINITE_PENALTY, PruningEnv, RewardInput, replay

STEP_KEYS = (
    "epoch",
    "prune_ratio",
    "kept_fraction",
    "compute_fraction_step",
    "compute_fraction_total",
    "flops_step",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "lr",
)


def make(epochs: int = 3, train_size: int = 1000, **kw) -> PruningEnv:
    """A small synthetic env: 1,000 training samples, a few epochs (well under a second an episode)."""
    return PruningEnv(epochs=epochs, train_size=train_size, **kw)


def run_episode(env, actions=None, seed=0, rng_seed=1):
    """Reset with ``seed`` and step until the end; actions from ``actions`` (callable obs -> action, or None for
    random actions from a fixed numpy generator). Returns observations, rewards, infos, terminated, truncated."""
    rng = np.random.default_rng(rng_seed)
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    term = trunc = False
    while not (term or trunc):
        a = actions(obs) if actions is not None else rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        rewards.append(r)
        infos.append(info)
    return observations, rewards, infos, term, trunc


# -- registration and spaces -------------------------------------------------------------------------------------
def test_ids_registered_with_flags():
    expected = {
        "Synthetic-MLP-v0": False,
        "FashionMNIST-MLP-v0": False,
        "FashionMNIST-CNN-v0": False,
        "MNIST-CNN-v0": False,
        "CIFAR10-ResNet18-v0": True,
        "CIFAR100-ResNet18-v0": True,
    }
    assert {f"prunegym/{k}" for k in expected} <= set(ENV_IDS)
    for name, nondet in expected.items():
        spec = gymnasium.spec(f"prunegym/{name}")
        assert spec.namespace == "prunegym"
        assert spec.nondeterministic is nondet
    # constructing does not load data: the CIFAR ids build without the dataset
    env = gymnasium.make("prunegym/CIFAR10-ResNet18-v0", epochs=2, device="cpu")
    assert env.unwrapped.base_config.dataset == "cifar10" and env.unwrapped.epochs == 2


def test_registered_kwargs_override():
    env = gymnasium.make(
        "prunegym/Synthetic-MLP-v0",
        pruner="uniform",
        epochs=4,
        train_size=1000,
        batch_size=64,
        device="cpu",
        seed=3,
        reward="lossless",
        compute_weight=0.5,
    )
    u = env.unwrapped
    cfg = u.base_config
    assert (cfg.epochs, cfg.train_size, cfg.batch_size, cfg.device) == (4, 1000, 64, "cpu")
    assert (u.pruner_name, u.reward.name, u.options.compute_weight) == ("uniform", "lossless", 0.5)
    _, info = env.reset()
    assert info["seed"] == 3


def test_spaces_and_features():
    for pruner, k in (("full", 1), ("uniform", 2)):
        env = make(pruner=pruner)
        assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (k,), np.float32)
        assert env.action_names[0] == "prune_ratio" and len(env.action_names) == k
        assert env.observation_space.dtype == np.float32
        assert env.observation_space.shape == (len(env.feature_names),)
        assert env.feature_names == FEATURE_NAMES and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
        assert set(E.FEATURE_DOCS) == set(FEATURE_NAMES)
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_encode_decode_round_trip():
    env = make(pruner="uniform", max_prune_ratio=0.8)
    for r in (0.0, 0.3, 0.8):
        for rescale in (0.0, 0.25, 1.0):
            a = env.encode_action(prune_ratio=r, rescale=rescale)
            assert a.dtype == np.float32 and env.action_space.contains(a)
            d = env.decode_action(a)
            assert d["prune_ratio"] == pytest.approx(r, abs=1e-6) and d["rescale"] == pytest.approx(rescale, abs=1e-6)
    assert env.encode_action(prune_ratio=0.0)[0] == -1.0 and env.encode_action(prune_ratio=0.8)[0] == 1.0
    assert env.decode_action([5.0, -3.0]) == {"prune_ratio": pytest.approx(0.8), "rescale": 0.0}  # clipped
    with pytest.raises(ValueError, match="prune_ratio"):
        env.encode_action(prune_ratio=0.9)
    with pytest.raises(ValueError, match="no knob"):
        env.encode_action(prune_ratio=0.1, temperature=1.0)


def test_bad_action_raises():
    env = make()
    env.reset(seed=0)
    bads = [
        np.zeros(2, np.float32),
        np.zeros((1, 1), np.float32),
        [],
        np.array([np.nan]),
        np.array([np.inf]),
        [-np.inf],
        "a",
        None,
    ]
    for bad in bads:
        with pytest.raises(ValueError, match=r"\(1,\).*\[-1, 1\]|\[-1, 1\].*\(1,\)"):
            env.step(bad)
    uniform = make(pruner="uniform")
    uniform.reset(seed=0)
    with pytest.raises(
        ValueError, match=r"shape \(1,\); expected \(2,\) with values in \[-1, 1\] \(prune_ratio, rescale\)"
    ):
        uniform.step(np.zeros(1, np.float32))
    _, _, _, _, info = env.step(np.zeros(1, np.float32))  # the env is still usable after rejected actions
    assert info["epoch"] == 1


def test_unknown_names_raise():
    cases = [
        (dict(pruner="nope"), "unknown pruner 'nope'; allowed: full, uniform"),
        (dict(reward="nope"), "unknown reward 'nope'; allowed: tradeoff, lossless"),
        (dict(reward=3), "reward=3"),
        (dict(lerning_rate=0.1), "unknown PruningEnv argument.*lerning_rate.*allowed:.*epochs"),
        (dict(task="nope"), "unknown task 'nope'; allowed: synthetic-mlp"),
        (dict(pruner="uniform", pruner_kwargs={"nope": 1}), "bad hyperparameters for pruner 'uniform'"),
        (dict(max_prune_ratio=1.0), "max_prune_ratio=1.0"),
        (dict(decision_interval=0), "decision_interval=0"),
        (dict(compute_weight=-1.0), "compute_weight=-1.0"),
        (dict(max_wall_time=-1), "max_wall_time=-1"),
        (dict(render_mode="human"), "render_mode='human'"),
        (dict(optimizer="lbfgs"), "optimizer='lbfgs' is not allowed; allowed: sgd, adamw"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            PruningEnv(**kwargs)
    with pytest.raises(ValueError, match="unknown PruningEnv argument"):
        gymnasium.make("prunegym/Synthetic-MLP-v0", lerning_rate=0.1)


def test_step_before_reset_and_after_end_raises():
    env = make(epochs=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode_action(0.0))
    env.reset(seed=0)
    _, _, term, _, _ = env.step(env.encode_action(0.0))
    assert term
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode_action(0.0))
    wrapped = gymnasium.make("prunegym/Synthetic-MLP-v0", epochs=1)
    with pytest.raises(gymnasium.error.ResetNeeded):
        wrapped.step(np.zeros(1, np.float32))


# -- episodes ----------------------------------------------------------------------------------------------------
def test_episode_structure_and_info():
    env = make(epochs=4, pruner="uniform")
    _, _, infos, term, trunc = run_episode(env)
    assert term and not trunc and len(infos) == 1 + 4
    assert infos[0]["epoch"] == 0 and infos[0]["seed"] == 0
    for t, info in enumerate(infos[1:], start=1):
        for k in STEP_KEYS:
            assert k in info and isinstance(info[k], (int, float)) and math.isfinite(info[k]), k
        assert info["epoch"] == t
        assert "wall_time" not in info and "error" not in info
        assert ("test_accuracy" in info) == (t == 4) and ("episode_record" in info) == (t == 4)
    last = infos[-1]
    assert last["compute_fraction_total"] == pytest.approx(sum(i["compute_fraction_step"] for i in infos[1:]))
    assert 0.0 <= last["test_accuracy"] <= 1.0
    json.dumps(last["episode_record"])  # JSON-able
    assert last["episode_record"]["seed"] == 0 and len(last["episode_record"]["actions"]) == 4
    # the realised kept fraction follows the ratio after the uniform pruner's one warm-up epoch
    for info in infos[2:]:
        assert info["kept_fraction"] == pytest.approx(1.0 - info["prune_ratio"], abs=1.0 / 1000 + 1e-9)


def test_record_wall_time_opt_in_and_render():
    env = make(epochs=2, record_wall_time=True, render_mode="ansi")
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.encode_action(0.0))
    assert info["wall_time"] > 0 and info["wall_time_total"] >= info["wall_time"]
    assert env.render().startswith("epoch 1/2")
    assert make().render() is None
    rgb = make(epochs=2, render_mode="rgb_array")
    rgb.reset(seed=0)
    blank = rgb.render()
    assert blank.shape == (64, 128, 3) and blank.dtype == np.uint8 and (blank == 255).all()
    rgb.step(rgb.encode_action(0.0))
    img = rgb.render()
    assert img.shape == (64, 128, 3) and (img[:, :64] != 255).any() and (img[:, 64:] == 255).all()


def test_tradeoff_return_telescopes():
    env = make(epochs=4, pruner="uniform", compute_weight=0.3)
    _, rewards, infos, _, _ = run_episode(env)
    last = infos[-1]
    expected = last["val_accuracy"] - infos[0]["val_accuracy"] - 0.3 * last["compute_fraction_total"]
    assert sum(rewards) == pytest.approx(expected, abs=1e-12)
    assert last["episode_return"] == pytest.approx(sum(rewards), abs=1e-12)
    for prev, info, r in zip(infos, infos[1:], rewards):
        assert r == pytest.approx(
            info["val_accuracy"] - prev["val_accuracy"] - 0.3 * info["compute_fraction_step"], abs=1e-12
        )


def test_same_seed_same_episode():
    a, b = make(epochs=4, pruner="uniform"), make(epochs=4, pruner="uniform")
    obs_a, rew_a, inf_a, _, _ = run_episode(a, seed=7)
    obs_b, rew_b, inf_b, _, _ = run_episode(b, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(obs_a, obs_b)) and len(obs_a) == len(obs_b)
    assert rew_a == rew_b
    assert inf_a == inf_b


def test_unseeded_reset_starts_a_different_run():
    env = make(epochs=1)
    obs0, info0 = env.reset(seed=0)
    obs1, info1 = env.reset()
    obs2, info2 = env.reset()
    assert len({info0["seed"], info1["seed"], info2["seed"]}) == 3
    assert not np.array_equal(obs1, obs2) or info1["val_accuracy"] != info2["val_accuracy"]
    # two fresh envs without any seed draw different runs too
    assert make(epochs=1).reset()[1]["seed"] != make(epochs=1).reset()[1]["seed"]


def test_seed_kwarg_is_first_reset_seed():
    env = make(epochs=1, seed=11)
    obs, info = env.reset()
    assert info["seed"] == 11
    assert np.array_equal(obs, make(epochs=1).reset(seed=11)[0])
    assert env.reset()[1]["seed"] != 11
    # the sequence of unseeded resets is reproducible from the seed kwarg
    env2 = make(epochs=1, seed=11)
    env2.reset()
    env3 = make(epochs=1, seed=11)
    env3.reset()
    assert env2.reset()[1]["seed"] == env3.reset()[1]["seed"]


def test_replay_reproduces_episode():
    env = make(epochs=4, pruner="uniform")
    _, rewards, infos, _, _ = run_episode(env, seed=5)
    record = json.loads(json.dumps(infos[-1]["episode_record"]))
    result = replay(record)
    assert result.rewards == rewards
    assert result.episode_return == pytest.approx(sum(rewards), abs=0)
    assert result.final_info["test_accuracy"] == infos[-1]["test_accuracy"]
    assert result.infos == infos[1:]
    with pytest.raises(ValueError, match="lacks 'seed'"):
        replay({"env_kwargs": {}, "actions": []})


def test_decision_interval_steps():
    env = make(epochs=10, decision_interval=3)
    _, rewards, infos, term, _ = run_episode(env)
    assert term and len(rewards) == 4
    assert [i["epoch"] for i in infos[1:]] == [3, 6, 9, 10]
    assert [i["compute_fraction_step"] for i in infos[1:]] == pytest.approx([0.3, 0.3, 0.3, 0.1])


def test_max_wall_time_truncates():
    env = make(epochs=3, max_wall_time=0)
    env.reset(seed=0)
    _, _, term, trunc, info = env.step(env.encode_action(0.0))
    assert trunc and not term
    assert "test_accuracy" in info and info["epoch"] == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode_action(0.0))
    result = replay(info["episode_record"])  # no wall-clock limit in the replay
    assert result.final_info["val_accuracy"] == info["val_accuracy"]
    assert result.final_info["test_accuracy"] == info["test_accuracy"]
    assert "max_wall_time" not in info["episode_record"]["env_kwargs"]


@pytest.mark.parametrize("pruner", ["full", "uniform"])
def test_observation_in_space_at_extremes(pruner):
    env = make(epochs=3, pruner=pruner)
    for action in (
        env.encode_action(prune_ratio=0.0),
        env.encode_action(prune_ratio=env.max_prune_ratio),
        np.ones(env.action_space.shape, np.float32),
    ):
        obs, _ = env.reset(seed=1)
        term = False
        while not term:
            assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
            assert np.all(np.abs(obs) <= 5.0), dict(zip(FEATURE_NAMES, obs))  # O(1): far from the clip bound
            obs, r, term, _, info = env.step(action)
            assert math.isfinite(r)
        assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
        if pruner == "uniform" and action[0] == 1.0:
            assert info["kept_fraction"] == pytest.approx(0.1, abs=1e-3)
            assert info["compute_fraction_total"] == pytest.approx((1 + 0.1 + 0.1) / 3, abs=1e-3)


def test_fixed_policies_drive_the_env():
    for name, pruner in (("full", "full"), ("uniform", "uniform"), ("uniform_rescaled", "uniform")):
        env = make(epochs=4, pruner=pruner)
        policy = make_policy(name, env)
        _, _, infos, term, _ = run_episode(env, actions=lambda o, policy=policy: policy.predict(o)[0])
        assert term
        total = infos[-1]["compute_fraction_total"]
        assert total == pytest.approx(1.0) if name == "full" else total < 1.0


# -- rewards -----------------------------------------------------------------------------------------------------
def test_lossless_reward_and_reference_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path))
    env = make(epochs=3, pruner="uniform", reward="lossless", lossless_penalty=10.0, lossless_tolerance=0.005)
    _, rewards, infos, _, _ = run_episode(env, actions=lambda o: env.encode_action(prune_ratio=0.9), seed=2)
    assert rewards[:-1] == [0.0, 0.0]
    files = list((tmp_path / "reference").glob("*.json"))
    assert len(files) == 1
    last = infos[-1]
    ref = last["reference_accuracy"]
    assert json.loads(files[0].read_text())["val_accuracy"] == ref
    shortfall = max(0.0, ref - 0.005 - last["val_accuracy"])
    assert rewards[-1] == pytest.approx(-last["compute_fraction_total"] - 10.0 * shortfall, abs=1e-12)
    # the reference is the final val accuracy of a full-policy episode of the same task and seed
    full = make(epochs=3, pruner="full")
    policy = make_policy("full", full)
    _, _, full_infos, _, _ = run_episode(full, actions=lambda o: policy.predict(o)[0], seed=2)
    assert full_infos[-1]["val_accuracy"] == ref
    # a second episode reuses the cache
    mtime = files[0].stat().st_mtime_ns
    run_episode(env, seed=2)
    assert files[0].stat().st_mtime_ns == mtime


def test_callable_reward():
    seen = []

    def my_reward(r: RewardInput) -> float:
        seen.append(r)
        return 2.0 * r.val_accuracy - r.compute_fraction_step

    env = make(epochs=2, reward=my_reward)
    _, rewards, infos, _, _ = run_episode(env)
    assert env.reward.name == "my_reward" and len(seen) == 2
    for r, info in zip(rewards, infos[1:]):
        assert r == pytest.approx(2.0 * info["val_accuracy"] - info["compute_fraction_step"])
    assert [s.terminated for s in seen] == [False, True]
    assert seen[0].initial_val_accuracy == infos[0]["val_accuracy"] and seen[0].reference_accuracy is None


def test_nonfinite_loss_ends_episode_with_penalty():
    env = make(epochs=3, lr=1e30, lr_schedule="constant")
    obs, info0 = env.reset(seed=0)
    obs, r, term, trunc, info = env.step(env.encode_action(0.0))  # must not raise
    assert term and not trunc
    assert "non-finite training loss" in info["error"]
    assert not math.isfinite(info["train_loss"])
    # scored as a run ending at zero accuracy, minus the penalty
    expected = (
        (0.0 - info0["val_accuracy"]) - env.reward.compute_weight * info["compute_fraction_step"] - NONFINITE_PENALTY
    )
    assert r == pytest.approx(expected, abs=1e-12)
    assert info["episode_return"] == r and "episode_record" in info and "test_accuracy" in info
    assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
    assert obs[FEATURE_NAMES.index("log_train_loss")] == 10.0  # a diverged loss reads as huge, not as tiny
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode_action(0.0))
    # also through gymnasium.make (passive checker wrappers) and with the lossless reward
    wrapped = gymnasium.make(
        "prunegym/Synthetic-MLP-v0", epochs=2, lr=1e30, lr_schedule="constant", nonfinite_penalty=3.0
    )
    wrapped.reset(seed=1)
    _, r2, term2, _, info2 = wrapped.step(np.zeros(1, np.float32))
    assert term2 and "error" in info2 and r2 < -3.0


def test_global_rngs_untouched():
    import random

    import torch

    torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)  # a known state, not the one found
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state().clone())
    env = make(epochs=2, pruner="uniform")
    run_episode(env, actions=lambda o: env.encode_action(prune_ratio=0.5, rescale=1.0))
    env.reset()  # an unseeded reset draws from the env's own generator
    assert random.getstate() == states[0]
    assert np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])


def test_nonfinite_validation_loss_ends_the_episode_like_a_training_one():
    """The validation branch: training stays finite, the validation loss does not (issue 12)."""
    from dataclasses import replace as dc_replace

    env = make(epochs=3, pruner="uniform")
    obs, info0 = env.reset(seed=0)
    real = env.run.evaluate

    def evaluate(split):
        res = real(split)
        return dc_replace(res, loss=float("inf")) if split == "val" else res

    env.run.evaluate = evaluate
    obs, r, term, trunc, info = env.step(env.encode_action(prune_ratio=0.5))
    assert term and not trunc
    assert info["error"] == "non-finite validation loss (inf) after epoch 0"
    assert math.isfinite(info["train_loss"]) and info["val_loss"] == float("inf")
    expected = (
        (0.0 - info0["val_accuracy"]) - env.reward.compute_weight * info["compute_fraction_step"] - NONFINITE_PENALTY
    )
    assert r == pytest.approx(expected, abs=1e-12)
    assert info["episode_return"] == r and "test_accuracy" in info and info["episode_record"]["actions"]
    assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.encode_action(0.0))


def test_the_disk_reference_cache_returns_the_reference_of_its_own_config(tmp_path, monkeypatch):
    from prunegym.envs import reference

    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path))
    env = make(epochs=2, pruner="uniform", reward="lossless")
    full = make(epochs=2, pruner="full")
    policy = make_policy("full", full)
    truth = {
        s: run_episode(full, actions=lambda o: policy.predict(o)[0], seed=s)[2][-1]["val_accuracy"] for s in (4, 5)
    }
    for s in (4, 5):  # fill the disk cache
        assert run_episode(env, seed=s)[2][-1]["reference_accuracy"] == truth[s]
    files = sorted((tmp_path / "reference").glob("*.json"))
    assert len(files) == 2
    monkeypatch.setattr(reference, "_MEMORY", {})  # read from disk now
    for s in (5, 4):
        assert run_episode(env, seed=s)[2][-1]["reference_accuracy"] == truth[s]
    # an entry whose stored config is not the asked one is not trusted: recomputed and rewritten
    entry = json.loads(files[0].read_text())
    entry["config"]["seed"] = 999
    entry["val_accuracy"] = 0.123
    files[0].write_text(json.dumps(entry))
    monkeypatch.setattr(reference, "_MEMORY", {})
    got = {s: run_episode(env, seed=s)[2][-1]["reference_accuracy"] for s in (4, 5)}
    assert got == truth
    assert 0.123 not in [json.loads(f.read_text())["val_accuracy"] for f in files]
