"""The real-data ids construct and run a step on a small subset (uses the ``data_root`` fixture of conftest)."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

import prunegym.envs  # noqa: F401  (registers the ids)


def test_fashion_mnist_mlp_episode(data_root):
    env = gymnasium.make(
        "prunegym/FashionMNIST-MLP-v0",
        pruner="uniform",
        train_size=2000,
        test_size=500,
        epochs=2,
        data_root=str(data_root),
    )
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    run = env.unwrapped.run
    assert run.num_train == 2000 and run.data.num_classes == 10 and run.data.input_shape == (1, 28, 28)
    action = env.unwrapped.encode_action(prune_ratio=0.5)
    obs, r, term, trunc, info = env.step(action)
    assert not term and not trunc and info["epoch"] == 1 and info["kept_fraction"] == 1.0  # warm-up epoch
    assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
    assert math.isfinite(r) and 0.0 <= info["val_accuracy"] <= 1.0
    obs, r, term, trunc, info = env.step(action)
    assert term and info["kept_fraction"] == pytest.approx(0.5) and 0.0 <= info["test_accuracy"] <= 1.0
    env.close()


@pytest.mark.parametrize("env_id", ["prunegym/FashionMNIST-CNN-v0", "prunegym/MNIST-CNN-v0"])
def test_cnn_id_runs_one_step(data_root, env_id):
    env = gymnasium.make(env_id, train_size=1000, val_size=500, test_size=500, epochs=2, data_root=str(data_root))
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.run.data.input_shape == (1, 28, 28)
    obs, r, term, trunc, info = env.step(env.unwrapped.encode_action(prune_ratio=0.0))
    assert not term and not trunc and info["epoch"] == 1
    assert env.observation_space.contains(obs) and np.all(np.isfinite(obs)) and math.isfinite(r)
    env.close()
