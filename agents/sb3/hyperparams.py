"""Hyperparameters per env id in RL-Baselines3-Zoo's YAML format, shipped as ``hyperparams/<algo>.yml``.

A file maps env ids to dicts. The keys the zoo's ``ExperimentManager`` interprets are handled the same way
here: ``n_timesteps``, ``n_envs``, ``normalize`` (``true`` or a string such as
``"dict(norm_obs=True, norm_reward=False)"``; ``gamma`` is copied into the ``VecNormalize`` arguments),
``env_wrapper`` (``"module.Class"``, ``{"module.Class": kwargs}`` or a list of those, from prunegym's own
:data:`WRAPPERS` only), ``policy_kwargs`` (an expression string such as ``"dict(net_arch=[64, 64],
activation_fn=nn.Tanh)"``, read by :mod:`.expressions` without ``eval``: literals, ``dict(...)`` and
``nn.<activation>`` only), ``noise_type`` / ``noise_std`` (off-policy action noise),
``lin_<value>`` schedules for ``learning_rate`` / ``clip_range`` / ``clip_range_vf``, and ``train_freq``
given as a list; ``policy`` is an SB3 policy name (``MlpPolicy``) or a class under ``stable_baselines3.`` /
``sb3_contrib.``. Two keys are prunegym's own (RL Zoo does not know them): ``training_wrapper`` (same form
as ``env_wrapper``, applied on top of it to the training envs only and not part of the agent's env
interface: reward shaping such as :class:`~prunegym.envs.RelativeReward`) and ``seed_pool`` (each
training env cycles through that many run seeds, :class:`~prunegym.agents.env_factory.TrainingSeedStream`).
Every other key goes to the algorithm's constructor. Files without the two keys therefore work with
``python -m rl_zoo3.train --algo ppo --env prunegym/Synthetic-MLP-v0 --gym-packages prunegym.envs
--conf-file <path to ppo.yml>``.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

from .expressions import literal_expression

__all__ = [
    "HYPERPARAMS_DIR",
    "WRAPPERS",
    "ZOO_KEYS",
    "HyperParams",
    "hyperparams_path",
    "load_hyperparams",
    "make_action_noise",
    "make_wrapper",
    "resolve_hyperparams",
]

# The env wrappers an ``env_wrapper`` entry (a hyperparameter file, an agent's .json) may name: prunegym's own.
# name -> (module, class)
WRAPPERS: dict[str, tuple[str, str]] = {
    "prunegym.envs.DiscreteRatio": ("prunegym.envs.wrappers", "DiscreteRatio"),
    "prunegym.envs.wrappers.DiscreteRatio": ("prunegym.envs.wrappers", "DiscreteRatio"),
    "prunegym.envs.ResidualAction": ("prunegym.envs.wrappers", "ResidualAction"),
    "prunegym.envs.wrappers.ResidualAction": ("prunegym.envs.wrappers", "ResidualAction"),
    "prunegym.envs.RelativeReward": ("prunegym.envs.relative_reward", "RelativeReward"),
    "prunegym.envs.relative_reward.RelativeReward": ("prunegym.envs.relative_reward", "RelativeReward"),
}
_POLICY_MODULES = ("stable_baselines3.", "sb3_contrib.")

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

# Keys the zoo consumes itself (everything else is an algorithm constructor argument).
ZOO_KEYS = (
    "n_timesteps",
    "n_envs",
    "normalize",
    "env_wrapper",
    "noise_type",
    "noise_std",
    "frame_stack",
    "callback",
    "monitor_kwargs",
    "vec_env_wrapper",
)
_SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
_EXPR_KEYS = ("policy_kwargs", "replay_buffer_kwargs")


def hyperparams_path(algo: str) -> Path:
    """The shipped YAML file of ``algo`` (``hyperparams/<algo>.yml``)."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def load_hyperparams(
    algo: str, env_id: str, overrides: dict[str, Any] | None = None, path: str | Path | None = None
) -> dict[str, Any]:
    """The raw (zoo-format) hyperparameters of ``algo`` for ``env_id`` from ``path`` (default: the shipped
    file), with ``overrides`` applied on top. Raises ``ValueError`` when the file has no entry for the id."""
    file = Path(path) if path is not None else hyperparams_path(algo)
    if not file.is_file():
        raise ValueError(f"no hyperparameter file {str(file)!r} for algo {algo!r}")
    with open(file) as f:
        table = yaml.safe_load(f) or {}
    if env_id not in table:
        raise ValueError(
            f"no {algo} hyperparameters for {env_id!r} in {str(file)!r}; allowed: {', '.join(map(str, table))}"
        )
    raw = copy.deepcopy(table[env_id])
    raw.update(overrides or {})
    return raw


def _eval_expr(text: str) -> Any:
    """A zoo-style expression (``"dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``), see :mod:`.expressions`."""
    return literal_expression(text)


def _schedule(key: str, value: Any):
    if isinstance(value, str):
        kind, _, initial = value.partition("_")
        if kind != "lin" or not initial:
            raise ValueError(f"{key}={value!r}: expected a number or 'lin_<initial value>'")
        start = float(initial)
        return lambda progress_remaining: progress_remaining * start
    return value


def _import(name: str):
    module, _, attr = name.rpartition(".")
    if not module:
        raise ValueError(f"{name!r} is not a 'module.Class' name")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {name!r}: {exc}") from exc


def _wrapper_class(name: Any):
    if not isinstance(name, str) or name not in WRAPPERS:
        raise ValueError(f"env_wrapper {name!r} is not one of prunegym's wrappers; allowed: {', '.join(WRAPPERS)}")
    module, attr = WRAPPERS[name]
    return getattr(importlib.import_module(module), attr)


def make_wrapper(spec: Any) -> Callable | None:
    """A function ``env -> wrapped env`` for a zoo ``env_wrapper`` value (``None`` for none): a name of
    :data:`WRAPPERS`, ``{name: kwargs}`` (JSON values) or a list of those; any other name raises
    ``ValueError`` listing the allowed ones (an agent's ``.json`` cannot make prunegym import or call code)."""
    if spec is None:
        return None
    items = spec if isinstance(spec, list) else [spec]
    wrappers = []
    for item in items:
        if isinstance(item, dict):
            if len(item) != 1:
                raise ValueError(f"env_wrapper entry {item!r} must have exactly one key (the class name)")
            ((name, kwargs),) = item.items()
        else:
            name, kwargs = item, {}
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            raise ValueError(f"env_wrapper {name!r}: its arguments must be a mapping, got {kwargs!r}")
        try:
            json.dumps(kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"env_wrapper {name!r}: its arguments must be plain values ({exc})") from exc
        wrappers.append((_wrapper_class(name), dict(kwargs)))

    def wrap(env):
        for cls, kwargs in wrappers:
            env = cls(env, **kwargs)
        return env

    return wrap


def make_action_noise(noise_type: str | None, noise_std: float | None, n_actions: int):
    """SB3 action noise for the zoo's ``noise_type`` (``normal``, ``ornstein-uhlenbeck``) and ``noise_std``."""
    if noise_type is None:
        return None

    kind = str(noise_type).strip()
    sigma = float(noise_std if noise_std is not None else 0.1) * np.ones(n_actions)
    if "normal" in kind:
        return NormalActionNoise(mean=np.zeros(n_actions), sigma=sigma)
    if "ornstein-uhlenbeck" in kind:
        return OrnsteinUhlenbeckActionNoise(mean=np.zeros(n_actions), sigma=sigma)
    raise ValueError(f"unknown noise_type {noise_type!r}; allowed: normal, ornstein-uhlenbeck")


@dataclass
class HyperParams:
    """Zoo hyperparameters split into what the trainer uses and the algorithm's constructor arguments."""

    raw: dict[str, Any]
    n_timesteps: int | None
    n_envs: int
    normalize: bool
    normalize_kwargs: dict[str, Any]
    env_wrapper: Any  # the raw zoo spec (JSON-able), see make_wrapper
    noise_type: str | None
    noise_std: float | None
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    training_wrapper: Any = None  # prunegym's own: on top of env_wrapper, training envs only
    seed_pool: int | None = None  # prunegym's own: run seeds each training env cycles through


def resolve_hyperparams(raw: dict[str, Any]) -> HyperParams:
    """Interpret zoo hyperparameters ``raw`` (not modified) as the zoo does."""
    hp = copy.deepcopy(raw)
    for key in ("frame_stack", "callback", "vec_env_wrapper", "monitor_kwargs"):
        if hp.get(key) is not None:
            raise ValueError(f"hyperparameter {key!r} is not supported by prunegym's trainer (use RL Zoo)")
        hp.pop(key, None)
    n_timesteps = hp.pop("n_timesteps", None)
    n_envs = int(hp.pop("n_envs", 1))
    if n_envs < 1:
        raise ValueError(f"n_envs={n_envs} must be >= 1")
    normalize = hp.pop("normalize", False)
    normalize_kwargs: dict[str, Any] = {}
    if isinstance(normalize, str):
        normalize_kwargs = dict(_eval_expr(normalize))
        normalize = True
    elif isinstance(normalize, dict):
        normalize_kwargs, normalize = dict(normalize), True
    normalize = bool(normalize)
    if normalize and "gamma" in hp:
        normalize_kwargs["gamma"] = hp["gamma"]
    env_wrapper = hp.pop("env_wrapper", None)
    training_wrapper = hp.pop("training_wrapper", None)
    seed_pool = hp.pop("seed_pool", None)
    if seed_pool is not None and (isinstance(seed_pool, bool) or not isinstance(seed_pool, int) or seed_pool < 1):
        raise ValueError(f"seed_pool={seed_pool!r} must be an int >= 1 (run seeds per training env)")
    noise_type = hp.pop("noise_type", None)
    noise_std = hp.pop("noise_std", None)
    for key in _SCHEDULE_KEYS:
        if key in hp:
            hp[key] = _schedule(key, hp[key])
    for key in _EXPR_KEYS:
        if isinstance(hp.get(key), str):
            hp[key] = _eval_expr(hp[key])
    if isinstance(hp.get("train_freq"), list):
        hp["train_freq"] = tuple(hp["train_freq"])
    if isinstance(hp.get("policy"), str) and "." in hp["policy"]:
        if not hp["policy"].startswith(_POLICY_MODULES):
            raise ValueError(
                f"policy {hp['policy']!r}: a dotted policy must be a class under "
                f"{' or '.join(m.rstrip('.') for m in _POLICY_MODULES)}; or use an SB3 name such as "
                "'MlpPolicy'"
            )
        hp["policy"] = _import(hp["policy"])
    hp.setdefault("policy", "MlpPolicy")
    return HyperParams(
        raw=copy.deepcopy(raw),
        n_timesteps=int(float(n_timesteps)) if n_timesteps else None,
        n_envs=n_envs,
        normalize=normalize,
        normalize_kwargs=normalize_kwargs,
        env_wrapper=env_wrapper,
        noise_type=noise_type,
        noise_std=noise_std,
        algo_kwargs=hp,
        training_wrapper=training_wrapper,
        seed_pool=seed_pool,
    )
