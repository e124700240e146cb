"""A trained SB3 agent with what it needs to act in a fresh env, saved as ``<stem>.zip`` + ``<stem>.json``.

``<stem>.zip`` is SB3's own file (``PPO.load`` reads it). ``<stem>.json`` (format ``prunegym-agent/1``)
holds the algo, env id and env kwargs of training, the zoo hyperparameters, the env wrapper (``DQN``:
``prunegym.envs.DiscreteRatio``), seeds, timesteps and the observation statistics of ``VecNormalize``
(``obs_normalizer``: mean, var, epsilon, clip_obs), so evaluation needs no pickle. The trainer also writes
SB3's ``vecnormalize.pkl`` beside the final model for SB3 / RL Zoo tools.

``load_agent`` also reads a bare SB3 zip (an RL Zoo run): the algo is inferred from the saved attributes,
``vecnormalize.pkl`` is looked for beside it or in the zoo's ``<stem>/`` folder, and a discrete action space
gets ``DiscreteRatio``.

Trust: an SB3 ``.zip`` and a ``vecnormalize.pkl`` are pickle-based, so loading one runs whatever code it
carries, exactly as ``PPO.load`` does: load only agent files you trust (your own, or ``pretrained:<name>``,
which resolves only inside the shipped folder). The ``.json`` is data: its ``env_wrapper`` may only name a
wrapper of :data:`prunegym.agents.sb3.hyperparams.WRAPPERS`, and nothing in it is evaluated.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3 as sb3
from gymnasium import spaces

from prunegym.envs import DiscreteRatio
from prunegym.training.io import canonical_json, to_jsonable

from .hyperparams import make_wrapper

__all__ = [
    "AGENT_FORMAT",
    "ALGOS",
    "Agent",
    "ObsNormalizer",
    "agent_fingerprint",
    "agent_label",
    "agent_runtime",
    "algo_class",
    "load_agent",
    "save_agent",
]

AGENT_FORMAT = "prunegym-agent/1"
ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")
_INTERFACE_KWARGS = ("pruner", "pruner_kwargs", "max_prune_ratio")


def algo_class(algo: str):
    """The SB3 class of ``algo`` (one of ``ALGOS``)."""

    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    return getattr(sb3, algo.upper())


@dataclass
class ObsNormalizer:
    """``VecNormalize``'s observation transform, frozen: ``clip((obs - mean) / sqrt(var + epsilon))``."""

    mean: list[float]
    var: list[float]
    epsilon: float = 1e-8
    clip_obs: float = 10.0
    count: float = 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float64)
        var = np.asarray(self.var, dtype=np.float64)
        out = (np.asarray(obs, dtype=np.float64) - mean) / np.sqrt(var + self.epsilon)
        return np.clip(out, -self.clip_obs, self.clip_obs).astype(np.float32)

    @classmethod
    def from_vecnormalize(cls, vn) -> ObsNormalizer | None:
        if vn is None or not getattr(vn, "norm_obs", False):
            return None
        rms = vn.obs_rms
        return cls(
            mean=[float(v) for v in np.ravel(rms.mean)],
            var=[float(v) for v in np.ravel(rms.var)],
            epsilon=float(vn.epsilon),
            clip_obs=float(vn.clip_obs),
            count=float(rms.count),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Agent:
    """An SB3 model plus its observation normalization and env interface; ``predict`` has SB3's signature
    and normalizes the observation first, so the evaluation harness treats agents and baselines alike.

    ``obs_normalizer``: an :class:`ObsNormalizer`, any callable on observations (a live
    ``VecNormalize.normalize_obs`` during training) or ``None``. ``meta``: the ``<stem>.json`` contents.
    """

    def __init__(
        self,
        model,
        meta: dict[str, Any] | None = None,
        obs_normalizer: Callable | None = None,
        path: str | Path | None = None,
    ):
        self.model = model
        self.meta = dict(meta or {})
        self.obs_normalizer = obs_normalizer
        self.path = str(path) if path is not None else None

    @property
    def algo(self) -> str:
        return self.meta.get("algo") or type(self.model).__name__.lower()

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.algo

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.meta.get("hyperparams") or {})

    def env_interface(self) -> dict[str, Any]:
        """The env kwargs that fix the action's meaning (pruner, pruner_kwargs, max_prune_ratio) as trained."""
        kw = self.meta.get("env_kwargs") or {}
        out = {k: kw[k] for k in _INTERFACE_KWARGS if k in kw}
        if "pruner" not in out and self.meta.get("pruner"):
            out["pruner"] = self.meta["pruner"]
        return out

    def wrap_env(self, env):
        """``env`` with the training wrapper (zoo ``env_wrapper`` spec, or ``DiscreteRatio`` when the model's
        action space is discrete and no wrapper was recorded)."""
        spec = self.meta.get("env_wrapper")
        if spec is not None:
            return make_wrapper(spec)(env)

        if isinstance(self.model.action_space, spaces.Discrete) and not isinstance(env.action_space, spaces.Discrete):
            return DiscreteRatio(env)
        return env

    def normalize(self, observation):
        return self.obs_normalizer(observation) if self.obs_normalizer is not None else observation

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        return self.model.predict(
            self.normalize(observation), state=state, episode_start=episode_start, deterministic=deterministic
        )

    def fingerprint(self) -> str:
        """What this agent *is*: :func:`agent_fingerprint` of its file when it was loaded from one, else a hash
        of the policy's parameters, its observation statistics and its env interface."""
        if self.path is not None and Path(self.path).is_file():
            return agent_fingerprint(self.path)
        h = hashlib.sha256(b"prunegym-agent-params/1")
        for key, value in sorted(self.model.policy.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        norm = self.obs_normalizer
        stats = norm.to_dict() if isinstance(norm, ObsNormalizer) else (None if norm is None else repr(norm))
        return _fingerprint(h.hexdigest(), stats, self.meta)

    def save(self, path: str | Path) -> Path:
        norm = self.obs_normalizer if isinstance(self.obs_normalizer, ObsNormalizer) else None
        return save_agent(self.model, path, self.meta, norm)

    def __repr__(self) -> str:
        return f"Agent({self.algo!r}, env_id={self.meta.get('env_id')!r}, path={self.path!r})"


def _stem(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.zip"
    return p.with_suffix("") if p.suffix == ".zip" else p


def save_agent(model, path: str | Path, meta: dict[str, Any], obs_normalizer: ObsNormalizer | None) -> Path:
    """Write ``<stem>.zip`` (SB3) and ``<stem>.json`` (meta + observation statistics); returns the zip path.
    ``path`` may be a folder (``<folder>/model.zip``), a ``.zip`` path or a stem."""

    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(stem) + ".zip")
    doc = {
        **to_jsonable(meta),
        "format": AGENT_FORMAT,
        "obs_normalizer": obs_normalizer.to_dict() if obs_normalizer is not None else None,
    }
    tmp = stem.with_name(stem.name + ".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    tmp.replace(str(stem) + ".json")
    return Path(str(stem) + ".zip")


def _not_an_agent(path: Path, exc: BaseException) -> ValueError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return ValueError(
        f"cannot load agent {str(path)!r}: {type(exc).__name__}: {reason} (not an intact SB3 .zip "
        "saved by prunegym train, RL Zoo or SB3's save)"
    )


def _infer_algo(zip_path: Path) -> str:
    """The algo of a bare SB3 zip, from the attributes each class saves."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            data = json.loads(z.read("data"))
        if not isinstance(data, dict):
            raise ValueError("its 'data' entry is not a JSON object")
        keys = set(data)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
        raise _not_an_agent(zip_path, exc) from exc
    for algo, key in (
        ("dqn", "exploration_fraction"),
        ("td3", "policy_delay"),
        ("sac", "target_entropy"),
        ("ppo", "clip_range"),
        ("a2c", "gae_lambda"),
    ):
        if key in keys:
            return algo
    raise ValueError(f"cannot tell the algo of {str(zip_path)!r}; pass algo= (one of {', '.join(ALGOS)})")


def _load_vecnormalize(path: Path) -> ObsNormalizer | None:
    """The observation statistics of SB3's ``vecnormalize.pkl`` (a pickle: trusted, see the module docstring)."""
    try:
        with open(path, "rb") as f:
            return ObsNormalizer.from_vecnormalize(pickle.load(f))
    except Exception as exc:  # a truncated or foreign pickle
        raise ValueError(
            f"cannot load observation statistics {str(path)!r}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc


def _zoo_obs_normalizer(zip_path: Path) -> ObsNormalizer | None:
    for cand in (zip_path.with_name("vecnormalize.pkl"), zip_path.with_suffix("") / "vecnormalize.pkl"):
        if cand.is_file():
            return _load_vecnormalize(cand)
    return None


_CHECKPOINT = re.compile(r"^(?P<prefix>[A-Za-z0-9]+)_(?P<steps>\d+)_steps$")
_RUN_ONLY = ("obs_normalizer", "num_timesteps", "episodes", "format")


def _checkpoint_meta(stem: Path, state: dict[str, Any]) -> tuple[dict[str, Any], ObsNormalizer | None] | None:
    """Meta and observation statistics of a trainer checkpoint ``<algo>_<N>_steps`` (whose ``.json`` is the
    resume state, not agent meta): the meta the trainer stored in the state (``agent``), else that of the run's
    ``model.json`` / ``best_model.json`` one folder up; the statistics from ``<algo>_vecnormalize_<N>_steps.pkl``.
    ``None`` if ``stem`` is not a checkpoint or its run's meta cannot be found."""
    m = _CHECKPOINT.match(stem.name)
    if m is None:
        return None
    meta = state.get("agent")
    if meta is None:
        for cand in (stem.parent.parent / "model.json", stem.parent.parent / "best_model.json"):
            if cand.is_file():
                meta = _read_json(cand)
                break
    if not isinstance(meta, dict):
        return None
    steps = int(m.group("steps"))
    meta = {k: v for k, v in meta.items() if k not in _RUN_ONLY}
    meta.update(
        algo=meta.get("algo") or m.group("prefix"),
        num_timesteps=steps,
        episodes=state.get("episodes"),
        name=f"{meta.get('name') or m.group('prefix')}@{steps}",
        checkpoint=str(stem) + ".zip",
    )
    pkl = stem.with_name(f"{m.group('prefix')}_vecnormalize_{steps}_steps.pkl")
    norm = _load_vecnormalize(pkl) if pkl.is_file() else None
    return meta, norm


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"cannot read agent meta {str(path)!r}: {' '.join(str(exc).split())}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"agent meta {str(path)!r} must be a JSON object, got {type(doc).__name__}")
    return doc


def _normalizer(meta_path: Path, doc: Any) -> ObsNormalizer | None:
    if not doc:
        return None
    try:
        return ObsNormalizer(**doc)
    except TypeError as exc:
        raise ValueError(f"agent meta {str(meta_path)!r}: bad obs_normalizer ({exc})") from exc


def _read_meta(stem: Path) -> tuple[dict[str, Any], ObsNormalizer | None] | None:
    """``(meta, normalizer)`` from ``<stem>.json`` (an agent's meta or a trainer checkpoint's state), or
    ``None`` without a ``.json``. A ``.json`` that is neither (or not JSON) raises ``ValueError`` naming it."""
    meta_path = Path(str(stem) + ".json")
    if not meta_path.is_file():
        return None
    meta = _read_json(meta_path)
    if "algo" in meta:
        return meta, _normalizer(meta_path, meta.get("obs_normalizer"))
    found = _checkpoint_meta(stem, meta)
    if found is None:
        raise ValueError(
            f"{str(meta_path)!r} is neither a saved agent's meta (no 'algo') nor a trainer checkpoint "
            "with its run's model.json or best_model.json one folder up"
        )
    return found


def agent_runtime(path: str | Path) -> dict[str, Any] | None:
    """What a saved agent's published results were measured with (its ``.json``'s ``runtime``: versions,
    ``torch_threads``, ``device``, ``float_path``), without loading the model; ``None`` if it records none."""
    found = _read_meta(_stem(path))
    runtime = found[0].get("runtime") if found is not None else None
    return dict(runtime) if isinstance(runtime, dict) else None


def agent_label(path: str | Path) -> str:
    """The label of a saved agent without loading it: its recorded name (``<name>@<N>`` for the trainer's
    checkpoint at ``N`` steps), else its algo."""
    stem = _stem(path)
    found = _read_meta(stem)
    if found is not None:
        return str(found[0].get("name") or found[0]["algo"])
    return _infer_algo(Path(str(stem) + ".zip"))


def _fingerprint(model_digest: str, stats: Any, meta: dict[str, Any]) -> str:

    interface = {k: meta.get(k) for k in ("algo", "env_wrapper", "pruner")}
    interface["env_kwargs"] = {k: v for k, v in (meta.get("env_kwargs") or {}).items() if k in _INTERFACE_KWARGS}
    h = hashlib.sha256(model_digest.encode())
    h.update(canonical_json({"obs_normalizer": stats, "interface": interface}).encode())
    return "sha256:" + h.hexdigest()[:16]


def agent_fingerprint(path: str | Path) -> str:
    """The content hash of the saved agent at ``path`` (``sha256:`` + 16 hex digits) over what decides its
    actions: the bytes of its ``.zip``, the observation statistics it loads with (from its ``.json`` or the
    ``vecnormalize.pkl`` used for it) and its env interface (algo, wrapper, pruner and its kwargs). Retraining
    into the same path changes it; the label, timestamps and counters of the ``.json`` do not."""
    stem = _stem(path)
    zip_path = Path(str(stem) + ".zip")
    if not zip_path.is_file():
        raise FileNotFoundError(f"no saved agent at {str(path)!r} (looked for {str(zip_path)!r})")
    h = hashlib.sha256()
    with open(zip_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    found = _read_meta(stem)
    meta, norm = found if found is not None else ({}, _zoo_obs_normalizer(zip_path))
    return _fingerprint(h.hexdigest(), norm.to_dict() if norm is not None else None, meta)


def load_agent(path: str | Path, algo: str | None = None, device: str = "cpu") -> Agent:
    """Load an agent saved by :func:`save_agent` / ``train_agent`` (a ``.zip``, its stem or its folder), or
    a bare SB3 / RL Zoo zip, or one of the trainer's checkpoints (``<out>/checkpoints/<algo>_<N>_steps.zip``,
    labelled ``<name>@<N>``, with the observation statistics saved with it). ``FileNotFoundError`` if there is
    no such file, ``ValueError`` naming the file if it is not an intact agent. The files are trusted (pickle:
    see the module docstring)."""
    stem = _stem(path)
    zip_path = Path(str(stem) + ".zip")
    if not zip_path.is_file():
        raise FileNotFoundError(f"no saved agent at {str(path)!r} (looked for {str(zip_path)!r})")
    found = _read_meta(stem)
    if found is not None:
        meta, norm = found
    else:
        meta = {"algo": algo or _infer_algo(zip_path)}
        norm = _zoo_obs_normalizer(zip_path)
    algo = algo or meta["algo"]
    # Schedules are only needed to continue training (the trainer loads checkpoints itself).
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    try:
        model = algo_class(algo).load(str(zip_path), device=device, custom_objects=custom)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError, RuntimeError) as exc:
        raise _not_an_agent(zip_path, exc) from exc
    return Agent(model, meta=meta, obs_normalizer=norm, path=zip_path)
