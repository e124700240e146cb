"""One evaluation episode: (policy spec, env id, env kwargs, seed) -> a result row and per-epoch records.

:func:`run_episode` is the unit of work of ``evaluate`` and ``compare``. It has no side effects (no files,
no TensorBoard), builds everything it needs from picklable arguments, and can therefore run in another
process (a Ray task) as well as in the caller's. Actions are deterministic.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from tqdm.auto import tqdm

from prunegym.baselines import POLICIES, make_policy, policy_pruner
from prunegym.training import runtime

from ..env_factory import canonical_env_id, check_env_data, make_env
from ..rollout import play_episode
from ..sb3.agent import Agent, agent_fingerprint, agent_label, load_agent
from ..sb3.pretrained import PREFIX, pretrained_path
from ..tensorboard import epoch_records
from .results import EpisodeRow, canonical_json, to_jsonable

__all__ = [
    "EpisodeOutcome",
    "PolicySpec",
    "check_episode",
    "episode_outcome",
    "failed_outcome",
    "play_episode",
    "policy_fingerprint",
    "policy_spec",
    "run_episode",
]


@dataclass
class PolicySpec:
    """What to run. ``kind``: ``baseline`` (``name`` in ``POLICIES``, ``hparams`` overriding its defaults),
    ``agent`` (a saved agent at ``path``, or an in-memory :class:`Agent` in ``obj``) or ``custom`` (``obj``:
    anything with SB3's ``predict``). ``name`` is the label in rows, tables and TensorBoard."""

    kind: str
    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    obj: Any = field(default=None, repr=False, compare=False)
    fingerprint: str | None = field(default=None, compare=False)  # see policy_fingerprint

    def portable(self) -> PolicySpec:
        """A copy without the in-memory object when it can be rebuilt from ``path`` (to ship to workers)."""
        return replace(self, obj=None) if self.path and self.kind == "agent" else self


def policy_spec(policy: Any, name: str | None = None, hparams: dict[str, Any] | None = None) -> PolicySpec:
    """A :class:`PolicySpec` for ``policy``: a name in ``POLICIES``, a path to a saved agent (``.zip``, its
    stem or its folder), ``pretrained:<name>`` (a shipped agent), an :class:`Agent`, an SB3 model, anything
    with ``predict``, or a spec."""

    if isinstance(policy, PolicySpec):
        return replace(policy, name=name or policy.name, hparams={**policy.hparams, **(hparams or {})})
    if isinstance(policy, (str, Path)):
        text = str(policy)
        if text in POLICIES:
            return PolicySpec("baseline", name or text, dict(hparams or {}))
        if text.startswith(PREFIX):
            text = str(pretrained_path(text))
        p = Path(text)
        if text.endswith(".zip") or p.exists() or Path(text + ".zip").exists():
            if not (p.is_file() or (p / "model.zip").is_file() or Path(text + ".zip").is_file()):
                raise FileNotFoundError(f"no saved agent at {text!r}")
            if hparams:
                raise ValueError("hyperparameters apply to baselines only, not to a saved agent")

            return PolicySpec("agent", name or agent_label(p), {}, path=str(p))
        raise ValueError(
            f"unknown policy {text!r}; allowed: {', '.join(POLICIES)}, a path to a saved agent .zip "
            f"or pretrained:<name>"
        )
    if hparams:
        raise ValueError("hyperparameters apply to baseline names only, not to policy objects")
    if isinstance(policy, Agent):
        return PolicySpec("agent", name or policy.name, policy.hparams, path=policy.path, obj=policy)

    if isinstance(policy, BaseAlgorithm):
        agent = Agent(policy)
        return PolicySpec("agent", name or agent.name, {}, obj=agent)
    if hasattr(policy, "predict"):
        label = name or getattr(policy, "name", None) or type(policy).__name__
        return PolicySpec("custom", str(label), dict(getattr(policy, "hparams", {}) or {}), obj=policy)
    raise ValueError(
        f"cannot evaluate {policy!r}: expected a policy name, a saved agent path, an SB3 model or "
        "an object with predict()"
    )


def _digest(doc: Any) -> str:

    return "sha256:" + hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:16]


def policy_fingerprint(spec: PolicySpec, policy: Any = None) -> str:
    """What ``spec``'s policy *is*, as ``sha256:`` + 16 hex digits (the rows' ``policy_hash``): a baseline's
    name and full hyperparameters (defaults included); a saved agent's file content, observation statistics
    and env interface (:func:`prunegym.agents.sb3.agent.agent_fingerprint`); an in-memory agent's parameters; a
    custom object's class and ``hparams``. ``policy``: the loaded object, if there is one already."""

    if spec.fingerprint is not None:
        return spec.fingerprint
    if spec.kind == "baseline":
        cls = POLICIES.get(spec.name)
        defaults = dict(cls.defaults) if cls is not None else {}
        return _digest({"baseline": spec.name, "hparams": {**defaults, **spec.hparams}})
    obj = policy if policy is not None else spec.obj
    if spec.kind == "agent":
        if spec.path:
            return agent_fingerprint(spec.path)
        if isinstance(obj, Agent):
            return obj.fingerprint()
    cls = type(obj)
    return _digest(
        {
            "custom": f"{cls.__module__}.{cls.__qualname__}",
            "name": spec.name,
            "hparams": dict(getattr(obj, "hparams", {}) or spec.hparams or {}),
        }
    )


@dataclass
class EpisodeOutcome:
    """A finished episode: its result row and one record per env step (see ``epoch_records``); a failed
    episode (:func:`failed_outcome`) has no records."""

    row: EpisodeRow
    epochs: list[dict[str, float]]

    @property
    def failed(self) -> bool:
        return bool(self.row.error) and not self.row.steps


def _required_env_kwargs(spec: PolicySpec, policy: Any) -> dict[str, Any]:

    if spec.kind == "baseline":
        return {"pruner": policy_pruner(spec.name)}
    if isinstance(policy, Agent):
        return policy.env_interface()
    pruner = getattr(type(policy), "pruner", None)
    return {"pruner": pruner} if isinstance(pruner, str) else {}


def _env_kwargs_for(spec: PolicySpec, policy: Any, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    kw = dict(env_kwargs)
    for key, value in _required_env_kwargs(spec, policy).items():
        if key in kw and kw[key] != value:
            raise ValueError(f"policy {spec.name!r} needs {key}={value!r}, but the env kwargs give {key}={kw[key]!r}")
        kw[key] = value
    return kw


def _load(spec: PolicySpec) -> Any:
    if spec.obj is not None:
        return spec.obj
    if spec.kind == "agent":
        assert spec.path is not None  # an agent spec without obj has a path (policy_spec)
        return load_agent(spec.path)
    return None  # a baseline is built once the env exists


def _check_action_space(spec: PolicySpec, agent: Any, env) -> None:
    space = getattr(getattr(agent, "model", None), "action_space", None)
    if space is None:
        return
    same = getattr(space, "n", None) == getattr(env.action_space, "n", None) and getattr(
        space, "shape", None
    ) == getattr(env.action_space, "shape", None)
    if not same:
        raise ValueError(
            f"agent {spec.name!r} acts in {space} but the env made with pruner="
            f"{env.unwrapped.pruner_name!r} takes {env.action_space}; pass the pruner it was trained "
            "with (env kwargs pruner=...)"
        )


def _setup(spec: PolicySpec, env_id: str, env_kwargs: dict[str, Any]):
    """(env, policy, reported hparams) for one episode; the env is wrapped as the policy needs."""

    policy = _load(spec)
    env = make_env(env_id, _env_kwargs_for(spec, policy, env_kwargs))
    try:
        hparams = dict(spec.hparams)
        if spec.kind == "baseline":
            policy = make_policy(spec.name, env, **spec.hparams)
            hparams = dict(policy.hparams)
        elif spec.kind == "agent":
            env = policy.wrap_env(env)
            hparams = hparams or policy.hparams
            _check_action_space(spec, policy, env)
    except BaseException:
        env.close()
        raise
    return env, policy, hparams


def check_episode(spec: PolicySpec, env_id: str, env_kwargs: dict[str, Any] | None) -> None:
    """Build the env and the policy of an episode without running it, and load its data splits once: bad
    env kwargs, a pruner conflict, bad baseline hyperparameters, missing data or sizes the dataset cannot
    hold (``train_size``, ``val_size``, ``test_size``) raise before any episode starts."""

    env, _, _ = _setup(spec, canonical_env_id(env_id), dict(env_kwargs or {}))
    try:
        check_env_data(env)
    finally:
        env.close()


def run_episode(
    spec: PolicySpec,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    seed: int,
    *,
    progress: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> EpisodeOutcome:
    """Play one deterministic episode of ``spec`` on ``env_id`` with ``env_kwargs`` and ``seed``; ``on_step``
    is called with every step's ``info`` (e.g. a live TensorBoard run)."""

    env_id = canonical_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    env, policy, hparams = _setup(spec, env_id, env_kwargs)
    try:
        fingerprint = policy_fingerprint(spec, policy)
        base = env.unwrapped
        bar = None
        if progress:
            bar = tqdm(
                total=math.ceil(base.epochs / base.decision_interval),
                desc=f"{spec.name} seed {seed}",
                unit="step",
                leave=False,
            )
        start = time.perf_counter()
        try:

            def step(info: dict) -> None:
                if bar is not None:
                    bar.update()
                if on_step is not None:
                    on_step(info)

            infos, rewards = play_episode(env, policy, seed, on_step=step)
        finally:
            if bar is not None:
                bar.close()
        wall = time.perf_counter() - start
        kwargs = dict(base.env_kwargs)
        device = str(base.run.device) if base.run is not None else None
        threads = torch.get_num_threads()
    finally:
        env.close()
    return episode_outcome(
        spec,
        env_id,
        env_kwargs,
        hparams,
        seed,
        infos,
        rewards,
        wall,
        kwargs,
        policy_hash=fingerprint,
        runtime_info=runtime(device=device, threads=threads),
    )


def episode_outcome(
    spec: PolicySpec,
    env_id: str,
    env_kwargs: dict[str, Any],
    hparams: dict[str, Any],
    seed: int,
    infos: list[dict],
    rewards: list[float],
    wall_clock_s: float,
    env_config: dict[str, Any],
    *,
    policy_hash: str | None,
    runtime_info: dict[str, Any],
) -> EpisodeOutcome:
    """The :class:`EpisodeOutcome` of a played episode: its step ``infos`` and ``rewards``, the caller's
    ``env_kwargs``, the policy's reported ``hparams`` and the env's own kwargs ``env_config`` (used when the
    final info has no episode record), the policy's content hash and where it ran (``runtime_info``)."""
    final = infos[-1]
    record = final.get("episode_record") or {}
    kept = [float(i["kept_fraction"]) for i in infos]
    row = EpisodeRow(
        env_id=env_id,
        env_kwargs=to_jsonable(env_kwargs),
        env_config=to_jsonable(record.get("env_kwargs", env_config)),
        policy=spec.name,
        policy_type=spec.kind,
        policy_hparams=to_jsonable(hparams),
        agent_path=str(spec.path) if spec.path else None,
        seed=int(seed),
        test_accuracy=float(final.get("test_accuracy", float("nan"))),
        test_loss=float(final.get("test_loss", float("nan"))),
        val_accuracy=float(final["val_accuracy"]),
        compute_fraction=float(final["compute_fraction_total"]),
        kept_fraction=sum(kept) / len(kept),
        prune_ratios=[float(i["prune_ratio"]) for i in infos],
        kept_fractions=kept,
        episode_return=float(final.get("episode_return", sum(rewards))),
        epochs=int(final["epoch"]),
        steps=len(infos),
        actions=to_jsonable(record.get("actions", [])),
        error=final.get("error"),
        wall_clock_s=wall_clock_s,
        claimed_prune_ratios=[float(i.get("claimed_prune_ratio", float("nan"))) for i in infos],
        selector_compute_fraction=float(final.get("selector_compute_fraction_total", float("nan"))),
        instance=_instance(record),
        noisy_fraction=float(final["noisy_fraction"]) if final.get("noisy_fraction") is not None else None,
        kept_noisy_fractions=_per_step(infos, "kept_noisy_fraction"),
        kept_head_fractions=_per_step(infos, "kept_head_fraction"),
        kept_tail_fractions=_per_step(infos, "kept_tail_fraction"),
        policy_hash=policy_hash,
        runtime=runtime_info,
    )
    return EpisodeOutcome(row, epoch_records(infos))


def _instance(record: dict[str, Any]) -> dict[str, Any] | None:
    """The episode's data regime and budget from its record (``None`` without a regime)."""
    regime = record.get("regime")
    return {**regime, "compute_budget": record.get("compute_budget")} if regime else None


def _per_step(infos: list[dict], key: str) -> list[float]:
    """``infos``' values of ``key`` (a regime diagnostic), ``[]`` when the env reports none."""
    return [float(i[key]) for i in infos] if infos and infos[0].get(key) is not None else []


def failed_outcome(
    spec: PolicySpec,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    seed: int,
    error: str,
    wall_clock_s: float = float("nan"),
) -> EpisodeOutcome:
    """The outcome of an episode that could not finish (it raised, or its worker died): a row with the
    episode's identity, ``error``, no steps and NaN metrics (see ``EpisodeRow``); its ``runtime`` is this
    process's (versions; the device it was asked for)."""

    env_kwargs = dict(env_kwargs or {})
    try:
        config = _env_kwargs_for(spec, spec.obj, env_kwargs)
    except Exception:  # the pruner an unloaded agent needs is unknown here; the caller's kwargs will do
        config = env_kwargs
    nan = float("nan")
    row = EpisodeRow(
        env_id=canonical_env_id(env_id),
        env_kwargs=to_jsonable(env_kwargs),
        env_config=to_jsonable(config),
        policy=spec.name,
        policy_type=spec.kind,
        policy_hparams=to_jsonable(spec.hparams),
        agent_path=str(spec.path) if spec.path else None,
        seed=int(seed),
        test_accuracy=nan,
        test_loss=nan,
        val_accuracy=nan,
        compute_fraction=nan,
        kept_fraction=nan,
        prune_ratios=[],
        kept_fractions=[],
        episode_return=nan,
        epochs=0,
        steps=0,
        actions=[],
        error=str(error) or "failed",
        wall_clock_s=float(wall_clock_s),
        policy_hash=spec.fingerprint,
        runtime=runtime(device=config.get("device"), threads=None),
    )
    return EpisodeOutcome(row, [])
