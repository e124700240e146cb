"""PruningEnv under the checkers of gymnasium and SB3, under vectorised envs, and made in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import gymnasium
import numpy as np

import prunegym.envs  # noqa: F401  (registers the ids)

ENV_ID = "prunegym/Synthetic-MLP-v0"
MODULE_ID = "prunegym.envs:prunegym/Synthetic-MLP-v0"


def test_gymnasium_check_env_passes_without_warnings():
    from gymnasium.utils.env_checker import check_env

    for kwargs in ({}, {"pruner": "uniform", "render_mode": "rgb_array"}):
        env = gymnasium.make(ENV_ID, epochs=3, train_size=1000, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert [str(w.message) for w in caught] == []


def test_sb3_check_env_passes_without_warnings():
    from stable_baselines3.common.env_checker import check_env

    for kwargs in ({}, {"pruner": "uniform"}):
        env = gymnasium.make(ENV_ID, epochs=3, train_size=1000, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, warn=True)
        assert [str(w.message) for w in caught] == []


def test_dummy_vec_env_with_make_vec_env():
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # make_vec_env passes render_mode="rgb_array": supported, no warning
        vec = make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"epochs": 2, "train_size": 1000, "pruner": "uniform"})
    obs = vec.reset()
    assert obs.shape == (2, len(prunegym.envs.FEATURE_NAMES))
    actions = np.array([[0.0, -1.0], [1.0, 1.0]], np.float32)
    _, _, dones, _ = vec.step(actions)
    assert not dones.any()
    obs, rewards, dones, infos = vec.step(actions)
    assert dones.all() and np.all(np.isfinite(rewards))
    for info in infos:
        assert "terminal_observation" in info and "episode_record" in info and "test_accuracy" in info
    assert infos[0]["episode_record"]["seed"] != infos[1]["episode_record"]["seed"]
    vec.close()


def test_subproc_vec_env_forkserver():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = make_vec_env(
        MODULE_ID,
        n_envs=2,
        seed=3,
        env_kwargs={"epochs": 2, "train_size": 1000},
        vec_env_cls=SubprocVecEnv,
        vec_env_kwargs={"start_method": "forkserver"},
    )
    try:
        obs = vec.reset()
        assert obs.shape == (2, len(prunegym.envs.FEATURE_NAMES)) and np.all(np.isfinite(obs))
        actions = np.zeros((2, 1), np.float32)
        vec.step(actions)
        _, rewards, dones, infos = vec.step(actions)
        assert dones.all() and np.all(np.isfinite(rewards))
        assert [i["episode_record"]["seed"] for i in infos] == [3, 4]
    finally:
        vec.close()


def test_gymnasium_make_vec():
    vec = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", epochs=2, train_size=1000)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (2, len(prunegym.envs.FEATURE_NAMES)) and obs.dtype == np.float32
    assert vec.single_action_space.shape == (1,)
    actions = np.zeros((2, 1), np.float32)
    vec.step(actions)
    obs, rewards, term, trunc, info = vec.step(actions)
    assert term.all() and not trunc.any()
    assert np.all(np.isfinite(info["test_accuracy"])) and info["_test_accuracy"].all()
    vec.close()


def test_make_with_module_prefix_in_fresh_interpreter():
    code = textwrap.dedent(f"""
        import sys
        import gymnasium
        import numpy as np
        assert "prunegym.envs" not in sys.modules
        env = gymnasium.make({MODULE_ID!r}, epochs=1, train_size=1000)
        obs, info = env.reset(seed=0)
        obs, r, term, trunc, info = env.step(np.zeros(1, np.float32))
        assert term and not trunc and "test_accuracy" in info, info
        print("OK", env.spec.id)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"OK {ENV_ID}"


def test_readme_vector_env_example_runs_as_written(data_root):
    """The README's vector-env snippet in a fresh interpreter (it once lacked ``import prunegym.envs``)."""
    import os
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    section = (repo / "README.md").read_text().split("### Many episodes in one batched model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "gym.make_vec" in code and "venv.step(actions)" in code
    env = {**os.environ, "PRUNEGYM_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().startswith("[1. 1.")  # epoch 0 of the uniform pruner is its full warm-up
