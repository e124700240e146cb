"""Issue 21: the CPU's float path is recorded, compared and pinned.

``runtime`` records the CPU model and the float path (ATen's capability, oneDNN's and, on Intel, MKL's
instruction set); ``runtime_differences`` names a float-path mismatch (not a mere CPU model change);
``prunegym --float-path`` re-executes the command under the pinning environment variables, refuses a path the
CPU cannot run, and ``evaluate --reproduce`` takes a saved agent's recorded float path and threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prunegym.agents.cli import main
from prunegym.training import float_path, float_path_env, provenance, runtime, runtime_differences

ENV = "prunegym/Synthetic-MLP-v0"
KW_ARGS = ["epochs=2", "train_size=300", "val_size=100", "test_size=100"]
PIN_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "PRUNEGYM_FLOAT_PATH")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _child_float_path(env: dict[str, str]) -> str:
    code = "from prunegym.training import float_path; print(float_path())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def _needs(isa: str) -> None:
    if provenance.float_path_parts()["cpu_isa"] not in provenance._ISA_ORDER[provenance._ISA_ORDER.index(isa) :]:
        pytest.skip(f"this CPU has no {isa}")


def test_runtime_records_the_cpu_and_its_float_path():
    rt = runtime("cpu", threads=1)
    assert rt["cpu"] == provenance.cpu_name() and rt["float_path"] == float_path()
    parts = provenance.float_path_parts()
    assert set(parts) == {"aten", "onednn", "mkl", "cpu_isa", "vendor"}
    assert parts["aten"] == str(__import__("torch").backends.cpu.get_cpu_capability()).upper()


def test_a_float_path_mismatch_is_named_a_cpu_model_is_not():
    rt = runtime("cpu", threads=1)
    assert runtime_differences({**rt, "cpu": "Some Other CPU"}, rt) == []
    other = "AVX2" if rt["float_path"] != "AVX2" else "AVX512"
    assert runtime_differences({**rt, "float_path": other}, rt) == [f"float_path {other} -> {rt['float_path']}"]


def test_the_pinning_variables_lower_every_kernel_library():
    _needs("AVX2")
    assert float_path_env("AVX2")["ATEN_CPU_CAPABILITY"] == "avx2"
    assert float_path_env("avx2")["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert _child_float_path(_clean_env(**float_path_env("avx2"))).strip() == "AVX2"
    # ATen's capability alone leaves oneDNN on the CPU's best: a mixed path, named part by part
    if provenance.float_path_parts()["cpu_isa"] == "AVX512":
        mixed = _child_float_path(_clean_env(ATEN_CPU_CAPABILITY="avx2")).strip()
        assert mixed.startswith("aten=AVX2 onednn=AVX512")
    with pytest.raises(ValueError, match=r"float path 'sse' is not one that can be pinned; allowed: avx2, avx512"):
        float_path_env("sse")


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunegym.agents", *args], env=env, capture_output=True, text=True)


def test_cli_float_path_reexecutes_under_the_pinned_path_and_rows_record_it(tmp_path):
    _needs("AVX2")
    results = tmp_path / "rows.jsonl"
    args = ["--float-path", "avx2", "evaluate", "--policy", "uniform", "--env", ENV, "--seeds", "0", "--quiet"]
    proc = _cli([*args, "--results", str(results), "--env-kwargs", *KW_ARGS], _clean_env())
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["runtime"]["float_path"] == "AVX2" and row["runtime"]["cpu"] == provenance.cpu_name()


def test_a_float_path_above_the_cpus_best_is_refused_in_one_line():
    # the state of a re-executed command whose CPU still runs AVX2 kernels: it must not re-execute again
    env = _clean_env(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", PRUNEGYM_FLOAT_PATH="AVX512")
    proc = _cli(["--float-path", "avx512", "list"], env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "a float path above the CPU's best cannot be forced" in proc.stderr and "Traceback" not in proc.stderr


def test_reproduce_needs_an_agent_that_records_a_float_path(tiny_agent_dir, capsys):
    argv = ["evaluate", "--reproduce", "--env", ENV, "--seeds", "0", "--quiet", "--env-kwargs", *KW_ARGS]
    assert main([*argv, "--policy", "uniform"]) == 2
    assert "--reproduce needs a saved or shipped agent, not the baseline 'uniform'" in capsys.readouterr().err
    meta = tiny_agent_dir / "model.json"
    doc = json.loads(meta.read_text())
    doc["runtime"].pop("float_path")  # an agent saved before prunegym recorded float paths
    meta.write_text(json.dumps(doc))
    assert main([*argv, "--policy", str(tiny_agent_dir / "model.zip")]) == 2
    assert "records float path None, which cannot be pinned" in capsys.readouterr().err


def test_reproduce_runs_an_agent_under_its_recorded_float_path_and_threads(tiny_agent_dir, tmp_path):
    _needs("AVX2")
    meta = tiny_agent_dir / "model.json"
    doc = json.loads(meta.read_text())
    doc["runtime"].update(float_path="AVX2", torch_threads=1)
    meta.write_text(json.dumps(doc))
    results = tmp_path / "rows.jsonl"
    args = ["evaluate", "--reproduce", "--policy", str(tiny_agent_dir / "model.zip"), "--env", ENV, "--seeds", "0"]
    proc = _cli([*args, "--quiet", "--results", str(results), "--env-kwargs", *KW_ARGS], _clean_env())
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["runtime"]["float_path"], row["runtime"]["torch_threads"]) == ("AVX2", 1)


@pytest.fixture
def tiny_agent_dir(tmp_path):
    out = tmp_path / "agent"
    argv = ["train", "--algo", "ppo", "--env", ENV, "--total-timesteps", "4", "--seed", "0", "--quiet"]
    argv += ["--tensorboard-log", "", "--out", str(out), "--eval-freq", "0", "--hyperparams", "n_steps=2"]
    argv += ["batch_size=2", "n_epochs=1", "n_envs=1", "--env-kwargs", *KW_ARGS]
    assert main(argv) == 0
    return out


def test_replay_names_a_float_path_difference():
    import warnings

    import gymnasium as gym

    from prunegym.envs import replay

    env = gym.make("prunegym.envs:" + ENV, pruner="uniform", epochs=2, train_size=300, val_size=100, test_size=100)
    env.reset(seed=1)
    done = False
    while not done:
        *_, term, trunc, info = env.step(env.unwrapped.encode_action(prune_ratio=0.3))
        done = term or trunc
    record = info["episode_record"]
    assert record["versions"]["float_path"] == float_path()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        replay(record)
    other = {**record, "versions": {**record["versions"], "float_path": "aten=DEFAULT onednn=AVX mkl=own"}}
    with pytest.warns(RuntimeWarning, match=r"float_path aten=DEFAULT onednn=AVX mkl=own -> "):
        replay(other)


def test_env_processes_share_the_cores_out():
    import torch

    from prunegym.agents.sb3.vec_envs import _env_fn, subproc_threads, uses_subproc

    cores = os.cpu_count() or 1
    assert subproc_threads(1) == cores and subproc_threads(2) == max(1, cores // 2) and subproc_threads(10**6) == 1
    assert uses_subproc("auto", 2) and uses_subproc("subproc", 1) and not uses_subproc("auto", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _env_fn("prunegym.envs:" + ENV, {"epochs": 1, "train_size": 100}, None, [0, 0, 0], threads=1)()
        assert torch.get_num_threads() == 1  # what an env process of its own sets
    finally:
        torch.set_num_threads(before)
