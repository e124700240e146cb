"""One ``RayOptions`` per command: built once at the edge (the CLI's ``ray_options``, or the Python API's keywords),
passed whole down to the scheduler and the vec env, validated once. No Ray starts here (the places that would
start one are replaced)."""

from __future__ import annotations

import pytest

from prunegym.agents import compare, evaluate, train_agent
from prunegym.agents.cli import main
from prunegym.agents.evaluation import harness
from prunegym.agents.evaluation.matched_compute import compare_budgets
from prunegym.agents.parallel import ray_tasks, ray_vec_env
from prunegym.agents.parallel.ray_tasks import RayOptions
from prunegym.agents.sb3 import train, vec_envs

ENV = "prunegym/Synthetic-MLP-v0"
KW = dict(epochs=2, train_size=100, val_size=50, test_size=50)
KW_ARGS = [f"{k}={v}" for k, v in KW.items()]
ADDRESS = "10.0.0.1:6379"


class _Stop(Exception):
    """Raised where a Ray would start."""


@pytest.fixture
def address_checks(monkeypatch):
    """The addresses checked (the check itself skipped: nothing listens at ``ADDRESS``)."""
    checked: list[str] = []
    monkeypatch.setattr(ray_tasks, "check_ray_address", checked.append)
    return checked


@pytest.fixture
def built(monkeypatch):
    """Every RayOptions constructed."""
    made: list[RayOptions] = []
    init = RayOptions.__init__

    def counting(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(RayOptions, "__init__", counting)
    return made


@pytest.fixture
def from_cli(monkeypatch):
    """The RayOptions the CLI's ``ray_options`` built."""
    from prunegym.agents import cli

    made: list[RayOptions] = []
    build = cli.ray_options

    def recording(args):
        made.append(build(args))
        return made[-1]

    monkeypatch.setattr(cli, "ray_options", recording)
    return made


@pytest.fixture
def scheduled(monkeypatch):
    """The RayOptions each ``dispatch`` call of the harness got (no episode runs)."""
    got: list[RayOptions] = []

    def fake(tasks, sink, progress, ray, live=None, batched=False):
        got.append(ray)
        raise _Stop

    monkeypatch.setattr(harness, "dispatch", fake)
    return got


def test_validate_checks_an_address_once_per_object(address_checks):
    options = RayOptions(address=ADDRESS)
    assert options.validate() is options and options.validate() is options
    assert address_checks == [ADDRESS]
    RayOptions(address=ADDRESS).validate()  # another object is checked again
    assert address_checks == [ADDRESS, ADDRESS]


def test_train_agent_on_ray_checks_the_address_once(address_checks, monkeypatch, tmp_path):
    def no_ray():
        raise _Stop

    monkeypatch.setattr(ray_vec_env, "import_ray", no_ray)  # RayVecEnv stops where it would start Ray
    with pytest.raises(_Stop):
        train_agent("ppo", ENV, 8, 0, env_kwargs=KW, n_envs=2, vec_env="ray", ray_address=ADDRESS, out=tmp_path / "a")
    assert address_checks == [ADDRESS]


def test_make_vec_env_takes_one_ray_options_and_hands_it_to_ray_vec_env(monkeypatch):
    got = []
    monkeypatch.setattr(vec_envs, "RayVecEnv", lambda fns, ray=None: got.append((len(fns), ray)))
    options = RayOptions(cpus_per_run=2.0)
    vec_envs.make_vec_env(ENV, 2, 0, {**KW, "pruner": "uniform"}, vec_env="ray", ray=options)
    assert len(got) == 1 and got[0][0] == 2 and got[0][1] is options
    with pytest.raises(ValueError, match="vec_env='ray' only"):
        vec_envs.make_vec_env(ENV, 2, 0, KW, vec_env="dummy", ray=options)


def test_ray_vec_env_reads_its_resources_from_the_options(address_checks, monkeypatch):
    class FakeRay:
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            self.init_kwargs = kwargs

        def remote(self, **kwargs):
            self.remote_kwargs = kwargs
            raise _Stop

        def shutdown(self):
            pass

    fake = FakeRay()
    monkeypatch.setattr(ray_vec_env, "import_ray", lambda: fake)
    options = RayOptions(cpus_per_run=2.0, gpus_per_run=0.5)
    with pytest.raises(_Stop):
        ray_vec_env.RayVecEnv([lambda: None] * 3, ray=options)
    assert fake.init_kwargs["num_cpus"] == 6 and fake.init_kwargs["num_gpus"] is None
    assert fake.remote_kwargs == {"num_cpus": 2.0, "num_gpus": 0.5, "max_restarts": 0}


def test_cli_evaluate_builds_one_ray_options_and_passes_it_down(address_checks, built, from_cli, scheduled, tmp_path):
    argv = ["evaluate", "--policy", "full", "--env", ENV, "--seeds", "0", "--results", str(tmp_path / "r.jsonl")]
    with pytest.raises(_Stop):
        main([*argv, "--ray-address", ADDRESS, "--cpus-per-run", "2", "--quiet", "--env-kwargs", *KW_ARGS])
    assert len(built) == 1 and from_cli[0] is built[0] and len(scheduled) == 1 and scheduled[0] is built[0]
    assert built[0] == RayOptions(None, ADDRESS, 2.0, 0.0)
    assert address_checks == [ADDRESS]


def test_cli_compare_builds_one_ray_options_and_passes_it_down(address_checks, built, from_cli, scheduled, tmp_path):
    argv = ["compare", "--env", ENV, "--policies", "full", "uniform", "--seeds", "0", "--out", str(tmp_path / "c")]
    with pytest.raises(_Stop):
        main([*argv, "--workers", "2", "--ray-address", ADDRESS, "--quiet", "--env-kwargs", *KW_ARGS])
    assert len(built) == 1 and from_cli[0] is built[0] and len(scheduled) == 1 and scheduled[0] is built[0]
    assert built[0] == RayOptions(2, ADDRESS, None, 0.0)
    assert address_checks == [ADDRESS]


def test_cli_train_builds_one_ray_options_and_passes_it_to_the_vec_env(
    address_checks, built, from_cli, monkeypatch, tmp_path
):
    got = []

    def fake(*args, **kwargs):
        got.append(kwargs.get("ray"))
        raise _Stop

    monkeypatch.setattr(train, "make_vec_env", fake)
    argv = ["train", "--algo", "ppo", "--env", ENV, "--total-timesteps", "8", "--n-envs", "2", "--vec-env", "ray"]
    with pytest.raises(_Stop):
        main([*argv, "--ray-address", ADDRESS, "--out", str(tmp_path / "a"), "--quiet", "--env-kwargs", *KW_ARGS])
    assert len(built) == 1 and from_cli[0] is built[0] and got == built and got[0] is built[0]
    assert address_checks == [ADDRESS]


def test_the_keywords_build_the_options_and_ray_passes_as_it_is(scheduled):
    with pytest.raises(_Stop):
        evaluate("full", ENV, [0], results=None, cpus_per_run=2, **KW)
    assert scheduled[-1] == RayOptions(None, None, 2, 0.0)
    options = RayOptions(cpus_per_run=2)
    with pytest.raises(_Stop):
        evaluate("full", ENV, [0], results=None, ray=options, **KW)
    assert scheduled[-1] is options


def test_ray_and_the_keywords_at_once_are_refused(tmp_path):
    options = RayOptions(workers=2)
    msg = r"ray=RayOptions\(workers=2.*\) and workers=2 given together"
    with pytest.raises(ValueError, match=msg):
        evaluate("full", ENV, [0], results=None, ray=options, workers=2, **KW)
    with pytest.raises(ValueError, match=msg):
        compare(ENV, [0], policies=["full"], out=tmp_path / "c", ray=options, workers=2, **KW)
    with pytest.raises(ValueError, match=msg):
        compare_budgets(ENV, [0], [0.5], policies=["full"], out=tmp_path / "b", ray=options, workers=2)
    with pytest.raises(ValueError, match=r"ray=RayOptions\(.*\) and ray_address='auto', gpus_per_run=0.5 given"):
        train_agent("ppo", ENV, 8, 0, vec_env="ray", ray=options, ray_address="auto", gpus_per_run=0.5)
    with pytest.raises(ValueError, match=r"ray='auto' must be a RayOptions or None"):
        evaluate("full", ENV, [0], results=None, ray="auto", **KW)
    assert list(tmp_path.iterdir()) == []
