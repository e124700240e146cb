"""``train_agent``: SB3's PPO, A2C, SAC, TD3 (Box action) and DQN (through ``DiscreteRatio``) on a prunegym env.

Hyperparameters come from ``hyperparams/<algo>.yml`` (RL Zoo format, see :mod:`.hyperparams`), overridden
by ``hyperparams=``. Seeds follow :mod:`.env_factory`: training episodes draw run seeds >= 1,000,000 from
``[seed, rank, start_timestep]``, periodic evaluation uses seeds 10,000 + i. SB3 seeds its own model with
``seed``.

Output folder ``out`` (default ``trained/<env label>/<algo>/seed<k>``)::

    model.zip, model.json       the final agent (load_agent / evaluate read these)
    vecnormalize.pkl            SB3's VecNormalize statistics (also inside model.json)
    best_model.zip, .json       the best agent of the periodic held-out evaluations
    checkpoints/<algo>_<N>_steps.{zip,json}, <algo>_vecnormalize_<N>_steps.pkl,
    checkpoints/<algo>_replay_buffer_<N>_steps.pkl (off-policy, newest only)

``resume=True`` continues from the newest checkpoint: model, VecNormalize statistics, replay buffer and the
timestep counter (``reset_num_timesteps=False``) are restored and training runs up to ``total_timesteps``.
An interrupted run (``KeyboardInterrupt``) saves a checkpoint before re-raising. TensorBoard: SB3's tags
and the ``episode/`` tags go to ``<tensorboard_log>/<env label>/<algo>/seed<k>``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecNormalize

from prunegym.training import resolve_device, runtime
from prunegym.training.io import to_jsonable

from ..env_factory import canonical_env_id, check_env_data, env_label, eval_seeds, make_env
from ..output import writable_folder
from ..parallel.ray_tasks import RayOptions
from .agent import ALGOS, Agent, ObsNormalizer, algo_class, save_agent
from .callbacks import (
    EpisodeTagsCallback,
    HeldOutEvalCallback,
    ProgressCallback,
    ResumableCheckpoint,
    latest_checkpoint,
)
from .hyperparams import load_hyperparams, make_action_noise, make_wrapper, resolve_hyperparams
from .vec_envs import VEC_ENVS, make_vec_env, subproc_threads, uses_subproc

__all__ = ["DEFAULT_PRUNER", "default_out", "train_agent"]

# The pruner agents drive unless env_kwargs name one: ``full`` (the env's default) ignores the prune ratio,
# which would leave an agent nothing to learn.
DEFAULT_PRUNER = "uniform"

SEED_CONVENTION = (
    "training episodes: run seeds drawn in [1000000, 2**31-1) from SeedSequence([seed, rank, "
    "start_timestep]); periodic evaluation: seeds 10000 + i"
)


def default_out(algo: str, env_id: str, seed: int) -> Path:
    return Path("trained") / env_label(env_id) / algo / f"seed{seed}"


def _logger(log_dir: Path | None, verbose: int):

    formats: list[KVWriter] = []
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        formats.append(TensorBoardOutputFormat(str(log_dir)))
    return Logger(folder=str(log_dir) if log_dir is not None else None, output_formats=formats)


def _compose(inner: Callable | None, outer: Callable | None) -> Callable | None:
    """``env -> outer(inner(env))``, either of them possibly ``None``."""
    if inner is None or outer is None:
        return inner or outer
    return lambda env: outer(inner(env))


def _close(env) -> None:
    try:
        env.close()
    except (EOFError, BrokenPipeError, ConnectionResetError):  # workers already gone (Ctrl-C)
        pass


def train_agent(
    algo: str,
    env_id: str,
    total_timesteps: int | None = None,
    seed: int = 0,
    *,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    hyperparams_file: str | Path | None = None,
    n_envs: int | None = None,
    out: str | Path | None = None,
    tensorboard_log: str | Path | None = None,
    eval_freq: int | None = None,
    n_eval_episodes: int = 5,
    checkpoint_freq: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    verbose: int = 0,
    progress: bool = False,
    callbacks: Iterable[Any] = (),
    vec_env: str = "auto",
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float = 0.0,
) -> Agent:
    """Train ``algo`` on ``env_id`` for ``total_timesteps`` env steps (default: the file's ``n_timesteps``)
    and save it to ``out``; returns the trained :class:`Agent` (``agent.path`` is ``out/model.zip``).

    ``env_kwargs`` go to every env (``epochs``, ``train_size``, ``pruner``, ``compute_weight``, ...); the
    pruner defaults to ``uniform`` (:data:`DEFAULT_PRUNER`), since the env's default ``full`` ignores the
    prune ratio.
    ``hyperparams`` override the zoo entry (same keys, e.g. ``{"n_steps": 20}``); ``n_envs`` overrides
    its ``n_envs``. ``eval_freq`` / ``checkpoint_freq`` are in total env steps (default: a tenth of
    ``total_timesteps``; 0 turns them off; a final checkpoint is always written). ``resume``: continue
    from the newest checkpoint in ``out`` (a fresh start if there is none). Starting afresh in a folder
    that has checkpoints needs ``overwrite=True`` (which deletes them). ``callbacks``: extra SB3 callbacks.

    ``vec_env``: how the ``n_envs`` training envs run (``"auto"``, ``"dummy"``, ``"subproc"``, ``"ray"`` or
    ``"batched"``: one batched model of all envs' runs, see :func:`~prunegym.agents.sb3.vec_envs.make_vec_env`);
    with ``"ray"`` each env is a Ray actor with
    ``cpus_per_run`` CPUs (default 1; also its torch threads) and ``gpus_per_run`` GPUs, on a local Ray
    started for the training (or the cluster at ``ray_address``), so that the envs' training runs spread
    over a cluster's GPUs (pass ``device="cuda"`` in ``env_kwargs`` for them to use it; ``device`` here is
    the agent's networks'). The envs' torch threads can change their CPU results (see
    :mod:`prunegym.agents.parallel.ray_tasks`): ``subproc`` workers use torch's default.
    """

    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed!r} must be an int in [0, 2**63)")
    if vec_env not in VEC_ENVS:
        raise ValueError(f"unknown vec_env {vec_env!r}; allowed: {', '.join(VEC_ENVS)}")
    if vec_env == "ray":
        RayOptions(1, ray_address, cpus_per_run, gpus_per_run).validate()  # before anything is written
    elif ray_address or cpus_per_run is not None or gpus_per_run != 0.0:
        raise ValueError("ray_address, cpus_per_run and gpus_per_run apply to vec_env='ray' only")
    env_id = canonical_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    env_kwargs.setdefault("pruner", DEFAULT_PRUNER)
    raw = load_hyperparams(algo, env_id, hyperparams, hyperparams_file)
    hp = resolve_hyperparams(raw)
    total = int(total_timesteps if total_timesteps is not None else (hp.n_timesteps or 0))
    if total <= 0:
        raise ValueError(f"total_timesteps={total_timesteps!r} must be a positive int")
    n_envs = int(n_envs or hp.n_envs)
    wrapper = _compose(make_wrapper(hp.env_wrapper), make_wrapper(hp.training_wrapper))
    out = Path(out) if out is not None else default_out(algo, env_id, seed)
    # validate env kwargs, the wrappers and the data in this process before any worker starts or anything
    # is written (a worker's error would reach the user as an EOFError of the pipe)
    probe = make_env(env_id, env_kwargs, wrapper)
    try:
        check_env_data(probe)
    finally:
        probe.close()
    writable_folder(out, "agent folder")
    if tensorboard_log:
        writable_folder(tensorboard_log, "TensorBoard folder")
    ckpt_dir = out / "checkpoints"
    ckpt = latest_checkpoint(ckpt_dir, algo) if resume else None
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"{str(out)!r} already holds checkpoints; pass resume=True to continue that run or "
                "overwrite=True to start afresh"
            )
        shutil.rmtree(ckpt_dir)
    state = {"episodes": 0}
    if ckpt is not None:
        state.update(json.loads(ckpt[1].with_suffix(".json").read_text()))
    start = ckpt[0] if ckpt is not None else 0
    probe_env: Any = probe.unwrapped  # duck-typed: a PruningEnv's base_config
    probe_device = probe_env.base_config.device

    ray_kw: dict[str, Any] = (
        dict(ray_address=ray_address, cpus_per_env=cpus_per_run or 1.0, gpus_per_env=gpus_per_run)
        if vec_env == "ray"
        else {}
    )
    venv = make_vec_env(env_id, n_envs, seed, env_kwargs, wrapper, start, vec_env, seed_pool=hp.seed_pool, **ray_kw)
    cls = algo_class(algo)
    model = None
    try:
        vn_path = ckpt_dir / f"{algo}_vecnormalize_{start}_steps.pkl"
        if ckpt is not None and vn_path.is_file():
            venv = VecNormalize.load(str(vn_path), venv)
            venv.training = True
        elif hp.normalize:
            venv = VecNormalize(venv, **hp.normalize_kwargs)
        if ckpt is not None:
            model = cls.load(str(ckpt[1]), env=venv, device=device)
            buffer = ckpt_dir / f"{algo}_replay_buffer_{start}_steps.pkl"
            if buffer.is_file() and hasattr(model, "load_replay_buffer"):
                model.load_replay_buffer(str(buffer))
        else:
            kwargs = dict(hp.algo_kwargs)
            noise = (
                make_action_noise(hp.noise_type, hp.noise_std, int(venv.action_space.shape[0]))
                if hp.noise_type is not None
                else None
            )
            if noise is not None:
                kwargs["action_noise"] = noise
            model = cls(env=venv, seed=seed, device=device, verbose=verbose, **kwargs)
        log_dir = Path(tensorboard_log) / env_label(env_id) / algo / f"seed{seed}" if tensorboard_log else None
        model.set_logger(_logger(log_dir, verbose))

        episodes_cb = EpisodeTagsCallback(log_dir, start=state.get("episodes", 0))
        base_meta = {
            "name": f"{algo}_{env_kwargs.get('pruner', 'full')}",
            "algo": algo,
            "env_id": env_id,
            "env_kwargs": to_jsonable(env_kwargs),
            "pruner": env_kwargs.get("pruner", "full"),
            "env_wrapper": hp.env_wrapper,
            **({"training_wrapper": hp.training_wrapper} if hp.training_wrapper is not None else {}),
            **({"seed_pool": hp.seed_pool} if hp.seed_pool is not None else {}),
            "hyperparams": to_jsonable(raw),
            "seed": seed,
            "n_envs": n_envs,
            "total_timesteps": total,
            "eval_seeds": eval_seeds(n_eval_episodes),
            "seed_convention": SEED_CONVENTION,
            "resumed_from": start if ckpt is not None else None,
            "runtime": {
                **runtime(device=model.device),
                "env_device": str(resolve_device(probe_device)),
                "vec_env": vec_env,
                "env_threads": subproc_threads(n_envs) if uses_subproc(vec_env, n_envs) else None,
            },
        }

        def meta() -> dict[str, Any]:
            return {**base_meta, "num_timesteps": int(model.num_timesteps), "episodes": episodes_cb.episodes}

        def every(freq: int) -> int:  # env steps -> callback calls (one call per vec env step)
            return max(int(freq) // n_envs, 1) if freq else 0

        eval_cb = None
        n_eval_freq = every(max(total // 10, 1) if eval_freq is None else eval_freq)
        if n_eval_freq and n_eval_episodes > 0:
            eval_cb = HeldOutEvalCallback(
                lambda: make_env(env_id, env_kwargs), eval_seeds(n_eval_episodes), n_eval_freq, out / "best_model", meta
            )
            if state.get("best_mean_reward") is not None:
                eval_cb.best_mean = float(state["best_mean_reward"])

        def ckpt_state() -> dict[str, Any]:
            best = eval_cb.best_mean if eval_cb is not None and eval_cb.best_mean > float("-inf") else None
            return {"episodes": episodes_cb.episodes, "best_mean_reward": best, "agent": meta()}

        save_every = every(total // 10 if checkpoint_freq is None else checkpoint_freq)
        ckpt_cb = ResumableCheckpoint(ckpt_dir, algo, save_every, state=ckpt_state)
        cbs: list[BaseCallback] = [episodes_cb] + ([eval_cb] if eval_cb is not None else []) + [ckpt_cb]
        if progress:
            cbs.append(ProgressCallback(total, initial=start))
        cbs.extend(callbacks)
        remaining = total - int(model.num_timesteps)
        if remaining > 0:
            cb_list = CallbackList(cbs)
            try:
                model.learn(remaining, callback=cb_list, reset_num_timesteps=ckpt is None)
            except KeyboardInterrupt:
                ckpt_cb.save()
                cb_list.on_training_end()  # close writers, bars and the evaluation env
                raise
        if ckpt_cb.last_saved != int(model.num_timesteps):
            if getattr(ckpt_cb, "model", None) is None:  # learn() did not run
                ckpt_cb.init_callback(model)
            ckpt_cb.save()
        vn = model.get_vec_normalize_env()
        zip_path = save_agent(model, out / "model", meta(), ObsNormalizer.from_vecnormalize(vn))
        if vn is not None:
            vn.save(str(out / "vecnormalize.pkl"))
    finally:
        if model is not None:
            model.logger.close()
        _close(venv)
    return Agent(model, meta=meta(), obs_normalizer=ObsNormalizer.from_vecnormalize(vn), path=zip_path)
