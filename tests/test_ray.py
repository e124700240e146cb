"""Parallel runs on Ray: evaluate/compare with --workers, failures and reruns, RayVecEnv, no-Ray errors.

The first tests run without a Ray instance in this process (the CLI starts and shuts down its own; the
no-Ray test hides the module). The others share one local Ray (``ray_local``, two CPUs) for the module.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from prunegym.agents import compare, evaluate, read_rows
from prunegym.agents.cli import main

ENV = "prunegym/Synthetic-MLP-v0"
KW = dict(epochs=3, train_size=300, val_size=100, test_size=100)
KW_ARGS = [f"{k}={v}" for k, v in KW.items()]
POLICIES = ["uniform", "ucb"]


def _keyed(rows):
    """Rows as {(policy, seed): row without wall-clock}."""
    out = {}
    for row in rows:
        row = dict(row)
        row.pop("wall_clock_s")
        out[(row["policy"], row["seed"])] = row
    return out


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# -- without a Ray instance in this process -------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--env", ENV, "--policies", "full", "--workers", "2"],
        ["compare", "--env", ENV, "--policies", "full", "--ray-address", "auto"],
        ["evaluate", "--policy", "full", "--env", ENV, "--workers", "2"],
        ["train", "--algo", "ppo", "--env", ENV, "--n-envs", "2", "--vec-env", "ray"],
    ],
)
def test_parallel_options_without_ray_exit_2_with_the_install_command(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"prunegym {argv[0]}: error:") and err.count("\n") == 1
    assert 'pip install -e ".[ray]"' in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_python_api_without_ray_raises_import_error(monkeypatch, tmp_path):
    from prunegym.agents.parallel.ray_tasks import RayUnavailable

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailable, match=r'pip install -e "\.\[ray\]"'):
        compare(ENV, [0], policies=["full"], out=tmp_path / "c", workers=2, **KW)
    with pytest.raises(
        ImportError, match=r"parallel runs need Ray, which is not installed; install it with pip install"
    ):
        evaluate("full", ENV, [0], results=None, workers=2, **KW)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--workers", "0"], "workers=0 must be a positive int"),
        (["--gpus-per-run", "0.5"], "gpus_per_run applies to Ray runs only"),
        (["--workers", "2", "--cpus-per-run", "0"], "cpus_per_run=0.0 must be a number > 0"),
        (["--cpus-per-run", "-1"], "cpus_per_run=-1.0 must be a number > 0"),
    ],
)
def test_bad_parallel_options_exit_2(argv, expected, tmp_path, capsys):
    assert main(["compare", "--env", ENV, "--policies", "full", "--out", str(tmp_path / "c"), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_compare_with_workers_equals_the_sequential_run(tmp_path, capsys):
    """`compare --workers 2` (its own local Ray, shut down at the end): the same rows, TensorBoard runs and
    summary as the sequential command, record for record except wall-clock. Both run their episodes with one
    torch thread (--cpus-per-run 1: CPU results can depend on the thread count); the sequential command
    restores this process's setting afterwards."""
    ray = pytest.importorskip("ray")
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert not ray.is_initialized()
    threads = torch.get_num_threads()
    base = [
        "compare",
        "--env",
        ENV,
        "--seeds",
        "0",
        "1",
        "--policies",
        *POLICIES,
        "--quiet",
        "--cpus-per-run",
        "1",
        "--env-kwargs",
        *KW_ARGS,
    ]
    assert main(base + ["--out", str(tmp_path / "seq")]) == 0
    assert torch.get_num_threads() == threads
    assert main(base + ["--out", str(tmp_path / "par"), "--workers", "2"]) == 0
    assert "ran 4 episode(s)" in capsys.readouterr().out
    assert not ray.is_initialized()  # the command shut its Ray down

    seq, par = (read_rows(tmp_path / d / "results.jsonl") for d in ("seq", "par"))
    assert len(par) == 2 * len(POLICIES)
    assert _keyed(par) == _keyed(seq)

    def table(d):  # summary.csv without the wall-clock columns
        rows = [line.split(",") for line in (tmp_path / d / "summary.csv").read_text().splitlines()]
        wall = {i for i, name in enumerate(rows[0]) if name.startswith("wall_clock")}
        assert len(wall) == 3  # mean, std, ci95
        return [[c for i, c in enumerate(r) if i not in wall] for r in rows]

    assert table("par") == table("seq") and len(table("par")) == 1 + len(POLICIES)
    assert (tmp_path / "par" / "accuracy_vs_compute.png").stat().st_size > 1000

    def scalars(d, policy, seed):
        acc = EventAccumulator(str(tmp_path / d / "runs" / "prunegym_Synthetic-MLP-v0" / policy / f"seed{seed}"))
        acc.Reload()
        return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"] if "wall" not in t}

    for policy in POLICIES:
        for seed in (0, 1):
            assert scalars("par", policy, seed) == scalars("seq", policy, seed) != {}


# -- on one local Ray for the rest of the module --------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def _trouble_policy(tmp_path: Path):
    """A custom policy (its class defined here so that Ray ships it by value) that, recognising the seed of
    its episode by the first observation: seed 0 raises on its first attempt only, seed 1 always raises,
    seed 2 kills its worker process on its first two attempts. Every attempt appends a line to
    ``tmp_path/attempts-<seed>``."""
    from prunegym.agents.env_factory import make_env

    env = make_env(ENV, {**KW, "pruner": "uniform"})
    first_obs = {seed: env.reset(seed=seed)[0] for seed in (0, 1, 2)}
    action = env.unwrapped.encode_action(prune_ratio=0.4)
    env.close()

    class Trouble:
        name = "trouble"
        pruner = "uniform"

        def __init__(self):
            self.first_obs, self.action, self.log = first_obs, action, str(tmp_path)

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            if episode_start is not None and episode_start[0]:
                import os

                seed = next((s for s, o in self.first_obs.items() if np.allclose(o, obs, atol=1e-5)), None)
                if seed is not None:
                    path = os.path.join(self.log, f"attempts-{seed}")
                    with open(path, "a") as f:
                        f.write("x\n")
                    with open(path) as f:
                        attempt = len(f.readlines())
                    if seed == 0 and attempt == 1:
                        raise RuntimeError("seed 0 fails once")
                    if seed == 1:
                        raise RuntimeError("seed 1 always fails")
                    if seed == 2 and attempt <= 2:
                        os._exit(3)
            return self.action, state

    return Trouble()


def _attempts(tmp_path: Path, seed: int) -> int:
    path = tmp_path / f"attempts-{seed}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_failed_episodes_are_reported_retried_and_rerun(ray_local, tmp_path):
    trouble = _trouble_policy(tmp_path)
    out = tmp_path / "cmp"
    result = compare(ENV, [0, 1, 2], policies=[trouble, "full"], out=out, workers=2, **KW)
    assert (result.ran, result.skipped) == (6, 0)
    rows = {(r["policy"], r["seed"]): r for r in read_rows(out / "results.jsonl")}
    assert len(rows) == 6
    # an exception is retried once: seed 0 succeeded on its second attempt, seed 1 failed twice
    assert _attempts(tmp_path, 0) == 2 and rows["trouble", 0]["error"] is None and rows["trouble", 0]["steps"] == 3
    assert _attempts(tmp_path, 1) == 2
    assert rows["trouble", 1]["error"] == "RuntimeError: seed 1 always fails"
    # a dead worker is retried once by Ray, then reported
    assert _attempts(tmp_path, 2) == 2
    assert rows["trouble", 2]["error"].startswith("WorkerCrashedError")
    for seed in (1, 2):
        failed = rows["trouble", seed]
        assert failed["steps"] == 0 and math.isnan(failed["test_accuracy"]) and failed["policy_type"] == "custom"
        assert failed["env_config"]["pruner"] == "uniform"
        assert not (out / "runs" / "prunegym_Synthetic-MLP-v0" / "trouble" / f"seed{seed}").exists()
    # the other episodes are all there
    assert all(rows["full", s]["error"] is None and rows["full", s]["steps"] == 3 for s in (0, 1, 2))
    assert {(r["policy"], r["seed"]) for r in result.failed} == {("trouble", 1), ("trouble", 2)}
    assert {e["policy"]: e["n"] for e in result.summary} == {"trouble": 1, "full": 3}
    assert "Failed episodes (2)" in result.markdown and "seed 1 always fails" in result.markdown

    # the same comparison again: finished episodes are skipped, failed ones run again
    again = compare(ENV, [0, 1, 2], policies=[trouble, "full"], out=out, workers=2, **KW)
    assert (again.ran, again.skipped) == (2, 4)
    assert _attempts(tmp_path, 0) == 2 and _attempts(tmp_path, 1) == 4 and _attempts(tmp_path, 2) == 3
    assert len(read_rows(out / "results.jsonl")) == 8
    assert {(r["policy"], r["seed"]) for r in again.failed} == {("trouble", 1)}  # seed 2 ran this time
    assert {e["policy"]: e["n"] for e in again.summary} == {"trouble": 2, "full": 3}


def test_cli_evaluate_with_workers_uses_a_running_ray_and_leaves_it(ray_local, tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    argv = [
        "evaluate",
        "--policy",
        "uniform",
        "--env",
        ENV,
        "--seeds",
        "2",
        "0",
        "1",
        "--quiet",
        "--results",
        str(results),
        "--tensorboard-log",
        str(tmp_path / "runs"),
        "--env-kwargs",
        *KW_ARGS,
    ]
    assert main(argv + ["--workers", "2"]) == 0
    assert ray_local.is_initialized()
    out = capsys.readouterr().out
    assert "appended 3 row(s)" in out and "| uniform | 3 |" in out
    par = read_rows(results)
    assert sorted(r["seed"] for r in par) == [0, 1, 2]
    seq = evaluate("uniform", ENV, [2, 0, 1], results=None, cpus_per_run=1, **KW)
    assert _keyed(par) == _keyed(seq)
    rows = evaluate("uniform", ENV, [2, 0, 1], results=None, workers=2, **KW)
    assert [r["seed"] for r in rows] == [2, 0, 1]  # the Python API returns rows in the order of the seeds
    assert (tmp_path / "runs" / "prunegym_Synthetic-MLP-v0" / "uniform" / "seed2").is_dir()


def test_ray_vec_env_steps_like_dummy_vec_env(ray_local):
    from stable_baselines3.common.monitor import Monitor

    from prunegym.agents.parallel.ray_vec_env import RayVecEnv
    from prunegym.agents.sb3.vec_envs import make_vec_env

    kw = {**KW, "pruner": "uniform"}
    dummy = make_vec_env(ENV, 2, 7, kw, vec_env="dummy")
    rayv = make_vec_env(ENV, 2, 7, kw, vec_env="ray")
    try:
        assert isinstance(rayv, RayVecEnv) and rayv.num_envs == 2
        assert rayv.observation_space == dummy.observation_space and rayv.action_space == dummy.action_space
        assert rayv.get_attr("pruner_name") == ["uniform", "uniform"] and rayv.has_attr("pruner_name")
        assert rayv.env_is_wrapped(Monitor) == [True, True]
        assert (
            rayv.env_method("encode_action", prune_ratio=0.5, indices=[1])[0].tolist()
            == dummy.env_method("encode_action", prune_ratio=0.5, indices=[1])[0].tolist()
        )
        assert _same(rayv.reset().tolist(), dummy.reset().tolist())
        assert _same(rayv.reset_infos, dummy.reset_infos)
        rng = np.random.default_rng(0)
        for step in range(KW["epochs"] + 1):  # through the end of the first episodes and the auto-reset
            actions = rng.uniform(-1, 1, size=(2, *dummy.action_space.shape)).astype(np.float32)
            r_obs, r_rew, r_done, r_infos = rayv.step(actions)
            d_obs, d_rew, d_done, d_infos = dummy.step(actions)
            assert np.array_equal(r_obs, d_obs) and np.array_equal(r_rew, d_rew) and np.array_equal(r_done, d_done)
            for ri, di in zip(r_infos, d_infos):
                for info in (ri, di):
                    info.get("episode", {}).pop("t", None)  # Monitor's wall-clock time
                assert _same(ri.keys(), di.keys())
                assert all(
                    np.array_equal(ri[k], di[k]) if isinstance(ri[k], np.ndarray) else _same(ri[k], di[k]) for k in ri
                ), step
            assert r_done.all() == (step == KW["epochs"] - 1)
        assert "terminal_observation" not in r_infos[0]
        with pytest.raises(NotImplementedError, match="does not render"):
            rayv.render()
    finally:
        rayv.close()
        dummy.close()
    assert ray_local.is_initialized()  # a Ray the caller started stays up


def test_train_with_ray_vec_env_learns_what_dummy_vec_env_learns(ray_local, tmp_path, capsys):
    import json

    import torch

    from prunegym.agents import train_agent

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
        "ray",
        "--quiet",
        "--tensorboard-log",
        "",
        "--out",
        str(tmp_path / "ray"),
        "--eval-freq",
        "0",
        "--hyperparams",
        "n_steps=4",
        "batch_size=4",
        "n_epochs=1",
        "--env-kwargs",
        *KW_ARGS,
    ]
    assert main(argv) == 0
    assert "saved" in capsys.readouterr().out
    meta = json.loads((tmp_path / "ray" / "model.json").read_text())
    assert meta["num_timesteps"] == 8 and meta["n_envs"] == 2
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
    from prunegym.agents import load_agent

    ray_agent = load_agent(tmp_path / "ray" / "model.zip")
    a, b = ray_agent.model.policy.state_dict(), dummy.model.policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_regime_id_gives_the_same_rows_sequential_batched_and_on_ray(ray_local, data_root):
    """Issue 23: the regimes ids run everywhere. The long-tailed id (training sets of other sizes per seed and
    instance) evaluated sequentially, as one batch (the vector env) and as Ray tasks: the same instances, kept
    sets and compute; accuracies equal (batched: within float rounding)."""
    env = "prunegym/FashionMNIST-LT-v0"
    kw = dict(epochs=2, train_size=1500, val_size=300, test_size=300, data_root=str(data_root))
    seq = _keyed(evaluate("uniform", env, [0, 1], results=None, cpus_per_run=1, **kw))
    par = _keyed(evaluate("uniform", env, [0, 1], results=None, workers=2, **kw))
    assert par == seq
    bat = _keyed(evaluate("uniform", env, [0, 1], results=None, batched=True, cpus_per_run=1, **kw))
    assert {r["instance"]["imbalance"] for r in seq.values()} != {1.0}
    for key, row in seq.items():
        for field in ("instance", "kept_tail_fractions", "kept_head_fractions", "kept_fractions"):
            assert bat[key][field] == row[field], field
        assert bat[key]["compute_fraction"] == pytest.approx(row["compute_fraction"], rel=1e-6)
        assert bat[key]["test_accuracy"] == pytest.approx(row["test_accuracy"], abs=5e-3)
