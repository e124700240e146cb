"""Nothing hangs, nothing untrusted runs unasked, every user error one line (issue 12, items 2, 3, 8, 10, 11).

Unreachable Ray clusters fail in seconds; ``pretrained:`` names, agent ``.json`` wrappers and hyperparameter
expressions cannot reach code outside prunegym's own; an unwritable cache, bad results files, seeds outside
[0, 2**63), oversized datasets and broken agent files give one line before any episode; Ctrl-C prints the
command that resumes; rows, agents and the shipped agent record what they were measured with.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from prunegym.agents import evaluate, read_rows, train_agent
from prunegym.agents.cli import main

ENV = "prunegym/Synthetic-MLP-v0"
KW = dict(epochs=2, train_size=300, val_size=100, test_size=100)
KW_ARGS = [f"{k}={v}" for k, v in KW.items()]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(capsys, prefix: str = "prunegym") -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_episodes(monkeypatch):
    from prunegym.agents.evaluation import harness as evaluation

    def refuse(*args, **kwargs):
        raise AssertionError("an episode was scheduled before the error")

    monkeypatch.setattr(evaluation, "dispatch", refuse)


@pytest.fixture(scope="module")
def tiny_agent(tmp_path_factory) -> Path:
    """A PPO agent trained for 4 steps; tests copy its folder before changing anything."""
    out = tmp_path_factory.mktemp("agent") / "agent"
    train_agent(
        "ppo",
        ENV,
        4,
        0,
        env_kwargs=KW,
        hyperparams=dict(n_steps=2, batch_size=2, n_epochs=1, n_envs=1),
        out=out,
        eval_freq=0,
    )
    return out


def _copy_agent(tiny_agent: Path, dest: Path) -> Path:
    shutil.copytree(tiny_agent, dest)
    return dest / "model.zip"


# -- 2: an unreachable cluster fails fast ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--env", ENV, "--seeds", "0", "--policies", "full"],
        ["evaluate", "--policy", "full", "--env", ENV, "--seeds", "0"],
        ["train", "--algo", "ppo", "--env", ENV, "--vec-env", "ray", "--total-timesteps", "4"],
    ],
    ids=["compare", "evaluate", "train"],
)
@pytest.mark.parametrize("address", ["127.0.0.1:1", "auto"])
def test_an_unreachable_ray_address_fails_within_seconds_in_one_line(argv, address, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    import ray._private.services as services

    # "auto" must find nothing: no RAY_ADDRESS, no `ray start` record, no other local Ray (other tests' runs)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: frozenset())
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir=None: None)
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    assert main([*argv, "--quiet", "--ray-address", address, "--env-kwargs", *KW_ARGS]) == 2
    assert time.perf_counter() - start < 30
    err = _one_line(capsys, f"prunegym {argv[0]}: error:")
    assert address in err and "ray start --head" in err and "drop --ray-address" in err
    assert list(tmp_path.iterdir()) == []


def test_an_address_that_accepts_but_is_not_ray_fails_within_seconds():
    """A port that accepts connections but never answers as gRPC (a silent service, a proxy) fails the HTTP/2
    handshake after its timeout instead of Ray retrying for minutes."""
    import socket
    import threading

    from prunegym.agents.parallel.ray_address import RayUnreachable, check_ray_address

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    port = server.getsockname()[1]
    try:
        start = time.perf_counter()
        with pytest.raises(RayUnreachable, match=rf"no Ray cluster answers at 127.0.0.1:{port} .*does not speak gRPC"):
            check_ray_address(f"127.0.0.1:{port}", timeout=2.0)
        assert time.perf_counter() - start < 10
    finally:
        server.close()
        for conn, _ in accepted:
            conn.close()


# -- 3: loading runs no code that was not asked for --------------------------------------------------------------
def test_pretrained_names_resolve_only_inside_the_shipped_folder(tmp_path, capsys):
    from prunegym.agents.sb3.pretrained import PRETRAINED_DIR, pretrained_names, pretrained_path

    shipped = pretrained_names()
    src = PRETRAINED_DIR / f"{shipped[0]}.zip"
    outside = tmp_path / "x"
    shutil.copy(src, str(outside) + ".zip")
    shutil.copy(src.with_suffix(".json"), str(outside) + ".json")
    (tmp_path / "a").mkdir()
    shutil.copy(src, tmp_path / "a" / "b.zip")
    names = [
        os.path.relpath(outside, PRETRAINED_DIR),
        str(outside),
        os.path.relpath(tmp_path / "a" / "b", PRETRAINED_DIR),
        "a/b",
        "..",
        f"{shipped[0]}/../{shipped[0]}",
    ]
    for name in names:
        with pytest.raises(ValueError, match=rf"unknown pretrained agent .*; allowed: {shipped[0]}"):
            pretrained_path("pretrained:" + name)
        assert main(["evaluate", "--policy", "pretrained:" + name, "--env", ENV, "--quiet"]) == 2
        assert f"allowed: {', '.join(shipped)}" in _one_line(capsys)
    assert pretrained_path(f"pretrained:{shipped[0]}") == src


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A module ``prunegym_test_payload`` on sys.path whose import (or call) writes ``tmp_path/ran``."""
    marker = tmp_path / "ran"
    (tmp_path / "prunegym_test_payload.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "def Wrap(env, **kw):\n"
        f"    open({str(marker)!r}, 'w').write('called')\n"
        "    return env\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("prunegym_test_payload", None)


def test_an_agent_json_names_only_prunegym_wrappers(tiny_agent, tmp_path, marker_module, capsys):
    model = _copy_agent(tiny_agent, tmp_path / "evil")
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["env_wrapper"] = "prunegym_test_payload.Wrap"
    model.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(
        ValueError,
        match=r"env_wrapper 'prunegym_test_payload.Wrap' is not one of prunegym's "
        r"wrappers; allowed: prunegym.envs.DiscreteRatio",
    ):
        evaluate(str(model), ENV, [0], results=None, **KW)
    assert (
        main(
            [
                "evaluate",
                "--policy",
                str(model),
                "--env",
                ENV,
                "--quiet",
                "--results",
                str(tmp_path / "r.jsonl"),
                "--env-kwargs",
                *KW_ARGS,
            ]
        )
        == 2
    )
    assert "not one of prunegym's wrappers" in _one_line(capsys)
    assert not marker_module.exists()  # neither imported nor called
    from prunegym.agents.sb3.hyperparams import make_wrapper

    with pytest.raises(ValueError, match="not one of prunegym's wrappers"):
        make_wrapper({"prunegym_test_payload.Wrap": {"x": 1}})
    assert not marker_module.exists()


@pytest.mark.parametrize(
    "expression",
    [
        "th.os.system('touch {marker}')",
        "__import__('os').system('touch {marker}')",
        "dict(net_arch=[64], x=open('{marker}', 'w'))",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "nn.Module",
        "dict(**{{'a': 1}})",
        "lambda: 1",
    ],
)
def test_hyperparameter_expressions_run_no_code(expression, tmp_path, capsys):
    from prunegym.agents.sb3.hyperparams import load_hyperparams, resolve_hyperparams

    marker = tmp_path / "ran"
    text = expression.format(marker=marker)
    raw = load_hyperparams("ppo", ENV, {"policy_kwargs": text})
    with pytest.raises(ValueError, match=r"hyperparameter expression .* is not allowed; allowed: numbers"):
        resolve_hyperparams(raw)
    with pytest.raises(ValueError, match="is not allowed"):
        resolve_hyperparams({**load_hyperparams("ppo", ENV), "normalize": text})
    yml = tmp_path / "ppo.yml"
    yml.write_text(json.dumps({ENV: {**load_hyperparams("ppo", ENV), "policy_kwargs": text}}))
    assert (
        main(
            [
                "train",
                "--algo",
                "ppo",
                "--env",
                ENV,
                "--hyperparams-file",
                str(yml),
                "--quiet",
                "--out",
                str(tmp_path / "out"),
                "--tensorboard-log",
                "",
                "--env-kwargs",
                *KW_ARGS,
            ]
        )
        == 2
    )
    assert "is not allowed" in _one_line(capsys, "prunegym train: error:")
    assert not marker.exists()


def test_zoo_expressions_still_read_as_the_zoo_writes_them():
    import torch

    from prunegym.agents.sb3.expressions import literal_expression
    from prunegym.agents.sb3.hyperparams import HYPERPARAMS_DIR, load_hyperparams, resolve_hyperparams

    assert literal_expression(
        "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh, log_std_init=-0.5, ortho_init=False)"
    ) == {
        "net_arch": {"pi": [64, 64], "vf": [64, 64]},
        "activation_fn": torch.nn.Tanh,
        "log_std_init": -0.5,
        "ortho_init": False,
    }
    assert literal_expression(
        "dict(activation_fn=th.nn.ReLU, net_arch=[dict(pi=[8], vf=[8])], x=(1, +2.5e-3), y={'a': None})"
    ) == {"activation_fn": torch.nn.ReLU, "net_arch": [{"pi": [8], "vf": [8]}], "x": (1, 2.5e-3), "y": {"a": None}}
    import yaml

    for path in sorted(HYPERPARAMS_DIR.glob("*.yml")):
        for env_id in yaml.safe_load(path.read_text()):
            hp = resolve_hyperparams(load_hyperparams(path.stem, env_id))
            assert isinstance(hp.algo_kwargs["policy_kwargs"], dict) and hp.normalize_kwargs["norm_obs"] is True


def test_help_and_readme_say_agent_files_are_trusted_pickles(capsys):
    for command in ("evaluate", "compare"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert text.count("pickle-based: loading one runs the code it carries") == 1
        assert "load only files you trust" in text
    readme = " ".join((REPO / "README.md").read_text().split())
    assert readme.count("pickle-based") >= 1 and "load only agent files you trust" in readme


# -- 8: an unwritable reference cache ---------------------------------------------------------------------------
def test_lossless_reward_finishes_with_an_unwritable_cache_and_warns_once(tmp_path, monkeypatch):
    import gymnasium as gym
    import numpy as np

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("PRUNEGYM_CACHE", str(blocker / "cache"))  # mkdir fails: NotADirectoryError, even as root
    env = gym.make(ENV, reward="lossless", pruner="uniform", **KW)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in (0, 1):
            env.reset(seed=seed)
            done = False
            while not done:
                _, reward, term, trunc, info = env.step(np.zeros(env.action_space.shape, np.float32))
                done = term or trunc
            assert "reference_accuracy" in info and 0 <= info["reference_accuracy"] <= 1 and np.isfinite(reward)
    cache = [w for w in caught if "cannot be written" in str(w.message)]
    assert len(cache) == 1 and issubclass(cache[0].category, RuntimeWarning)
    assert "PRUNEGYM_CACHE" in str(cache[0].message) and str(blocker) in str(cache[0].message)


# -- 10: smaller ones -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, expected",
    [
        ("[1, 2]", "results.jsonl:2: a results line must be a JSON object (a row), got list"),
        ("3", "results.jsonl:2: a results line must be a JSON object (a row), got int"),
        ('"text"', "results.jsonl:2: a results line must be a JSON object (a row), got str"),
        ('{"policy": "uniform", "seed": "zero"}', "results.jsonl:2: seed='zero' is not an int"),
        ('{"env_id": "prunegym/Synth', "results.jsonl:2: not a JSON line"),
    ],
)
@pytest.mark.parametrize("rerun", [False, True])
def test_a_bad_results_file_fails_in_one_line_before_any_episode(line, expected, rerun, tmp_path, capsys, no_episodes):
    out = tmp_path / "cmp"
    out.mkdir()
    good = json.dumps({"env_id": ENV, "env_kwargs": {}, "policy": "full", "seed": 0})
    (out / "results.jsonl").write_text(good + "\n" + line + "\n")
    before = (out / "results.jsonl").read_text()
    argv = [
        "compare",
        "--env",
        ENV,
        "--seeds",
        "0",
        "--policies",
        "uniform",
        "--out",
        str(out),
        "--quiet",
        *(["--rerun"] if rerun else []),
        "--env-kwargs",
        *KW_ARGS,
    ]
    assert main(argv) == 2
    assert expected in _one_line(capsys, "prunegym compare: error:")
    assert (
        main(
            [
                "evaluate",
                "--policy",
                "uniform",
                "--env",
                ENV,
                "--seeds",
                "0",
                "--quiet",
                "--results",
                str(out / "results.jsonl"),
                "--env-kwargs",
                *KW_ARGS,
            ]
        )
        == 2
    )
    assert expected in _one_line(capsys, "prunegym evaluate: error:")
    assert (out / "results.jsonl").read_text() == before  # nothing appended to a corrupt file


def test_seeds_outside_0_to_2_pow_63_are_rejected_everywhere(tmp_path, capsys):
    import gymnasium as gym

    from prunegym.agents import compare
    from prunegym.training import derive_seed, torch_generator

    for bad in (2**64, 2**64 + 5, 2**63, -1):
        assert main(["evaluate", "--policy", "full", "--env", ENV, "--seeds", str(bad), "--quiet"]) == 2
        assert f"{bad}" in _one_line(capsys, "prunegym evaluate: error:")
        assert main(["train", "--algo", "ppo", "--env", ENV, "--seed", str(bad), "--quiet"]) == 2
        assert "[0, 2**63)" in _one_line(capsys, "prunegym train: error:")
        with pytest.raises(ValueError, match=r"outside the allowed range \[0, 2\*\*63\)"):
            evaluate("full", ENV, [0, bad], results=None, **KW)
        with pytest.raises(ValueError, match=r"outside the allowed range \[0, 2\*\*63\)"):
            compare(ENV, [bad], policies=["full"], out=tmp_path / "c", **KW)
        with pytest.raises(ValueError, match=r"\[0, 2\*\*63\)"):
            train_agent("ppo", ENV, 4, bad, env_kwargs=KW, out=tmp_path / "t")
        with pytest.raises(ValueError, match=r"outside the allowed range \[0, 2\*\*63\)"):
            gym.make(ENV, **KW).reset(seed=bad)
        with pytest.raises(ValueError, match=r"outside the allowed range \[0, 2\*\*63\)"):
            derive_seed(bad, "init")
        with pytest.raises(ValueError, match=r"outside the allowed range"):
            torch_generator(bad, "shuffle")
    assert not (tmp_path / "c").exists() and not (tmp_path / "t").exists()
    # seeds in range are all distinct streams, up to the largest (2**64 + 5 used to alias 5)
    assert len({derive_seed(s, "init") for s in (0, 5, 2**32, 2**32 + 5, 2**62, 2**63 - 1)}) == 6
    gym.make(ENV, **KW).reset(seed=2**63 - 1)


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]], ids=["sequential", "ray"])
def test_a_too_large_train_size_fails_in_the_pre_check(extra, tmp_path, capsys, no_episodes):
    if extra:
        pytest.importorskip("ray")
    argv = [
        "compare",
        "--env",
        ENV,
        "--seeds",
        "0",
        "1",
        "--policies",
        "full",
        "uniform",
        "--out",
        str(tmp_path / "c"),
        "--quiet",
        *extra,
        "--env-kwargs",
        "epochs=2",
        "train_size=1000000",
    ]
    assert main(argv) == 2
    assert "train_size=1000000 must be in [1, " in _one_line(capsys, "prunegym compare: error:")
    assert not (tmp_path / "c").exists()


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists() and len([ln for ln in path.read_text().splitlines() if ln.strip()]) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the command ended early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no {n} row(s) in {path} after {timeout} s")


def test_ctrl_c_prints_the_command_that_resumes_and_exits_130(tmp_path, capsys):
    out = tmp_path / "cmp"
    SEEDS = 24  # tiny episodes: enough of them that the interrupt lands mid-run even on a loaded machine
    argv = [
        "compare",
        "--env",
        ENV,
        "--seeds",
        *map(str, range(SEEDS)),
        "--policies",
        "uniform",
        "--out",
        str(out),
        "--quiet",
        "--cpus-per-run",
        "1",
        "--env-kwargs",
        "epochs=3",
        "train_size=600",
        "val_size=100",
        "test_size=100",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "prunegym.agents", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        # a shell that starts jobs in the background (nohup cmd &) hands them SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: restore the default so the test sends a real Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_rows(out / "results.jsonl", 1, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("prunegym compare: interrupted;") and "resume with: prunegym compare" in err
    done = len(read_rows(out / "results.jsonl"))
    assert 1 <= done < SEEDS
    resume = shlex.split(err.split("resume with: ", 1)[1].strip())
    assert resume[0] == "prunegym" and resume[1:] == argv
    assert main(resume[1:]) == 0
    assert f"ran {SEEDS - done} episode(s), skipped {done}" in capsys.readouterr().out
    assert sorted(r["seed"] for r in read_rows(out / "results.jsonl")) == list(range(SEEDS))


def test_interrupted_evaluate_names_the_seeds_left_and_train_the_resume_flag(tmp_path, capsys, monkeypatch):
    from prunegym.agents import cli
    from prunegym.agents.cli import main as cli_main
    from prunegym.agents.evaluation import dispatch

    real = dispatch.run_episode
    calls = []

    def interrupt_second(spec, env_id, env_kwargs, seed, progress=False, **kwargs):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, env_id, env_kwargs, seed, progress=progress, **kwargs)

    defaults = {"progress": False, "runner": interrupt_second, "live": None}
    monkeypatch.setattr(dispatch.run_all, "__kwdefaults__", defaults)
    results = tmp_path / "r.jsonl"
    argv = [
        "evaluate",
        "--policy",
        "uniform",
        "--env",
        ENV,
        "--seeds",
        "5",
        "6",
        "7",
        "--quiet",
        "--results",
        str(results),
        "--env-kwargs",
        *KW_ARGS,
    ]
    assert cli_main(argv) == 130
    err = _one_line(capsys, "prunegym evaluate: interrupted; 1 finished episode(s) are in")
    assert err.rstrip().endswith("--seeds 6 7") and [r["seed"] for r in read_rows(results)] == [5]

    def interrupted_training(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train_agent", interrupted_training)  # the trainer the command calls
    argv = ["train", "--algo", "ppo", "--env", ENV, "--out", str(tmp_path / "a"), "--overwrite", "--quiet"]
    assert cli_main(argv) == 130
    err = _one_line(capsys, "prunegym train: interrupted; a checkpoint was saved; continue with: prunegym train")
    assert "--resume" in err and "--overwrite" not in err


@pytest.mark.parametrize(
    "damage",
    [
        "truncated-zip",
        "not-a-zip",
        "json-garbage",
        "json-list",
        "json-bad-stats",
        "bare-zip-bad-data",
        "bare-zip-truncated-pkl",
    ],
)
def test_a_bad_agent_file_fails_in_one_line_naming_it(damage, tiny_agent, tmp_path, capsys):
    import zipfile

    model = _copy_agent(tiny_agent, tmp_path / "bad")
    meta = model.with_suffix(".json")
    if damage.startswith("bare-zip"):  # an RL Zoo style agent: no .json, statistics in vecnormalize.pkl
        meta.unlink()
    if damage == "bare-zip-bad-data":
        with zipfile.ZipFile(tiny_agent / "model.zip") as src, zipfile.ZipFile(model, "w") as dst:
            for item in src.infolist():
                dst.writestr(item, b"{not json" if item.filename == "data" else src.read(item.filename))
        named = model
    elif damage == "bare-zip-truncated-pkl":
        pkl = model.with_name("vecnormalize.pkl")
        pkl.write_bytes(pkl.read_bytes()[:40])
        named = pkl
    elif damage == "truncated-zip":
        model.write_bytes(model.read_bytes()[:200])
        named = model
    elif damage == "not-a-zip":
        model.write_bytes(b"\x00" * 64)
        named = model
    elif damage == "json-garbage":
        meta.write_text('{"algo": "ppo", ')
        named = meta
    elif damage == "json-list":
        meta.write_text("[1, 2]")
        named = meta
    else:
        doc = json.loads(meta.read_text())
        doc["obs_normalizer"] = {"average": [0.0]}
        meta.write_text(json.dumps(doc))
        named = meta
    for argv in (
        ["evaluate", "--policy", str(model), "--env", ENV, "--quiet", "--results", str(tmp_path / "r.jsonl")],
        ["compare", "--env", ENV, "--policies", "full", "--agent", str(model), "--out", str(tmp_path / "c"), "--quiet"],
    ):
        assert main([*argv, "--env-kwargs", *KW_ARGS]) == 2
        assert str(named) in _one_line(capsys, f"prunegym {argv[0]}: error:")


# -- 11: what results were measured with ------------------------------------------------------------------------
def test_rows_and_saved_agents_record_versions_threads_and_device(tiny_agent):
    import numpy as np
    import torch

    from prunegym.training.provenance import VERSION_KEYS

    row = evaluate("uniform", ENV, [0], results=None, cpus_per_run=1, **KW)[0]
    rt = row["runtime"]
    assert tuple(rt)[: len(VERSION_KEYS)] == VERSION_KEYS and rt["torch"] == torch.__version__
    assert rt["numpy"] == np.__version__ and rt["torch_threads"] == 1 and rt["device"] == "cpu"
    assert rt["prunegym"] and rt["stable_baselines3"] and rt["gymnasium"]
    meta = json.loads((tiny_agent / "model.json").read_text())
    assert meta["runtime"]["torch"] == torch.__version__ and meta["runtime"]["device"] == "cpu"
    assert meta["runtime"]["env_device"] == "cpu" and isinstance(meta["runtime"]["torch_threads"], int)


def test_the_shipped_agent_records_what_its_tables_were_measured_with():
    from prunegym.agents.sb3.pretrained import PRETRAINED_DIR, pretrained_names

    for name in pretrained_names():
        rt = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())["runtime"]
        assert rt["torch"] and rt["torch_threads"] >= 1 and rt["device"] in ("cpu", "cuda")
    rt = json.loads((PRETRAINED_DIR / "ppo_learned_fmnist_mlp.json").read_text())["runtime"]
    assert (rt["torch"], rt["torch_threads"], rt["device"]) == ("2.15.0+cu132", 1, "cpu")


def test_a_shipped_agent_run_under_other_versions_warns_once(tiny_agent, tmp_path, monkeypatch):
    from prunegym.agents.sb3 import pretrained
    from prunegym.training import runtime

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    shutil.copy(tiny_agent / "model.zip", tmp_path / "tiny.zip")
    meta = json.loads((tiny_agent / "model.json").read_text())

    def evaluate_with(recorded) -> list[str]:
        (tmp_path / "tiny.json").write_text(json.dumps({**meta, "runtime": recorded}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluate("pretrained:tiny", ENV, [0, 1], results=None, cpus_per_run=1, **KW)
        return [str(w.message) for w in caught if "measured under other versions" in str(w.message)]

    msgs = evaluate_with({**runtime("cpu", threads=1), "torch": "0.0.1", "torch_threads": 4})
    assert len(msgs) == 1 and "torch 0.0.1 -> " in msgs[0] and "torch_threads 4 -> 1" in msgs[0]
    assert msgs[0].startswith("pretrained:tiny:")
    assert evaluate_with(runtime("cpu", threads=1)) == []


def test_a_shipped_agent_warns_only_when_it_runs_an_episode(tiny_agent, tmp_path, monkeypatch):
    """The main job's resume, which runs nothing, used to warn about the shipped agent's runtime every time."""
    from prunegym.agents import compare
    from prunegym.agents.sb3 import pretrained
    from prunegym.training import runtime

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    shutil.copy(tiny_agent / "model.zip", tmp_path / "shipped" / "tiny.zip")
    meta = json.loads((tiny_agent / "model.json").read_text())
    recorded = {**runtime("cpu", threads=1), "torch_threads": 4}
    (tmp_path / "shipped" / "tiny.json").write_text(json.dumps({**meta, "runtime": recorded}))

    def warnings_of_one_compare() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compare(ENV, [0], policies=[], agents=["pretrained:tiny"], out=tmp_path / "cmp", cpus_per_run=1, **KW)
        return [str(w.message) for w in caught if "measured under other versions" in str(w.message)]

    assert len(warnings_of_one_compare()) == 1  # its episode runs: one warning
    assert warnings_of_one_compare() == []  # the resume skips it: nothing runs, nothing to warn about


def test_a_shipped_agent_on_a_registered_task_warns_without_a_key_error(tiny_agent, tmp_path, monkeypatch):
    """The runtime warning looked the task up among the presets only (a KeyError on a register_task id)."""
    import torch

    from prunegym.agents.sb3 import pretrained
    from prunegym.envs import register_task

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    shutil.copy(tiny_agent / "model.zip", tmp_path / "tiny.zip")
    meta = json.loads((tiny_agent / "model.json").read_text())
    (tmp_path / "tiny.json").write_text(json.dumps({**meta, "runtime": {**meta["runtime"], "torch": "0.0.1"}}))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 8, generator=g), torch.arange(400) % 3
    register_task(
        "test/ShippedOnUser-v0", {"train": (x, y)}, "mlp", epochs=2, val_size=0.2, model_kwargs={"hidden": (16,)}
    )
    with pytest.warns(RuntimeWarning, match=r"pretrained:tiny: .*torch 0\.0\.1 -> "):
        (row,) = evaluate("pretrained:tiny", "test/ShippedOnUser-v0", [0], results=None, cpus_per_run=1)
    assert row["error"] is None


def test_replay_warns_when_it_runs_under_other_versions():
    import gymnasium as gym
    import numpy as np

    from prunegym.envs import replay

    env = gym.make(ENV, pruner="uniform", **KW)
    env.reset(seed=3)
    done = False
    while not done:
        _, _, term, trunc, info = env.step(env.unwrapped.encode_action(prune_ratio=0.4))
        done = term or trunc
    record = info["episode_record"]
    assert record["versions"]["torch"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        same = replay(record)
    assert same.final_info["val_accuracy"] == info["val_accuracy"]
    other = {**record, "versions": {**record["versions"], "numpy": "0.0.1"}}
    with pytest.warns(RuntimeWarning, match=r"other versions or settings \(numpy 0.0.1 -> "):
        replay(other)
    row_like = {**record, "runtime": {**record["versions"], "torch_threads": 97, "device": "cpu"}}
    with pytest.warns(RuntimeWarning, match=r"torch_threads 97 -> "):
        replay(row_like)
    np.testing.assert_equal(replay(record).episode_return, same.episode_return)


def test_the_lock_file_pins_the_libraries_the_benchmarks_ran_with():
    lines = [
        ln.strip()
        for ln in (REPO / "requirements-lock.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    pins = dict(ln.split("==", 1) for ln in lines)
    assert len(pins) == len(lines)  # every line is name==version
    names = {k.lower().replace("_", "-") for k in pins}
    assert {"torch", "torchvision", "numpy", "stable-baselines3", "gymnasium", "tensorboard", "matplotlib"} <= names
    assert "prunegym" not in names and not any(ln.startswith("-e") for ln in lines)


def test_the_lock_file_holds_every_dependency_of_prunegym():
    """``pip install -r requirements-lock.txt && pip install -e . --no-deps`` must give a working prunegym: every
    dependency in pyproject.toml and, through the installed metadata of the pinned versions, every requirement
    of theirs is pinned (optuna and its SQLAlchemy stack were once missing, so every command failed)."""
    import importlib.metadata as md

    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = [ln.strip() for ln in (REPO / "requirements-lock.txt").read_text().splitlines()]
    pins = {canonicalize_name(n): v for n, _, v in (ln.partition("==") for ln in lines if ln and ln[0] != "#")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [canonicalize_name(Requirement(d).name) for d in project["dependencies"]]
    missing, seen = set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in pins:
            missing.add(name)
            continue
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue
        if installed != pins[name]:
            continue  # another version is installed here: its requirements need not be the pinned one's
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    assert not missing, f"requirements-lock.txt lacks {sorted(missing)}"
