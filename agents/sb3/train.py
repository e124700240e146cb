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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecNormalize

from prunegym.training import check_seed, resolve_device, runtime
from prunegym.training.io import to_jsonable

from ..env_factory import canonical_env_id, check_env_data, env_label, eval_seeds, make_env
from ..output import writable_folder
from ..parallel.ray_tasks import RayOptions, ray_options_of
from .agent import ALGOS, Agent, ObsNormalizer, algo_class, save_agent
from .callbacks import (
    EpisodeTagsCallback,
    HeldOutEvalCallback,
    ProgressCallback,
    ResumableCheckpoint,
    latest_checkpoint,
)
from .hyperparams import HyperParams, load_hyperparams, make_action_noise, make_wrapper, resolve_hyperparams
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
    ray: RayOptions | None = None,
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
    :mod:`prunegym.agents.parallel.ray_tasks`): ``subproc`` workers use torch's default. ``ray``: these
    settings as one :class:`~prunegym.agents.parallel.ray_tasks.RayOptions` instead (its ``workers`` unused).
    """

    seed, ray = _check_options(algo, seed, vec_env, ray, ray_address, cpus_per_run, gpus_per_run)
    env_id = canonical_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    env_kwargs.setdefault("pruner", DEFAULT_PRUNER)
    raw, hp, total, n_envs = _hyperparams(algo, env_id, hyperparams, hyperparams_file, total_timesteps, n_envs)
    run = _Run(
        algo=algo,
        env_id=env_id,
        env_kwargs=env_kwargs,
        seed=seed,
        raw=raw,
        hp=hp,
        total=total,
        n_envs=n_envs,
        wrapper=_compose(make_wrapper(hp.env_wrapper), make_wrapper(hp.training_wrapper)),
        out=Path(out) if out is not None else default_out(algo, env_id, seed),
        vec_env=vec_env,
        ray=ray if vec_env == "ray" else None,
        tensorboard_log=tensorboard_log,
        eval_freq=eval_freq,
        n_eval_episodes=n_eval_episodes,
        checkpoint_freq=checkpoint_freq,
        device=device,
        verbose=verbose,
        progress=progress,
        callbacks=callbacks,
    )
    ckpt, state, probe_device = _check_run(run, resume, overwrite)
    return _train(run, ckpt, state, probe_device)


@dataclass
class _Run:
    """The settings of a training run, checked and resolved: what the steps of :func:`train_agent` share."""

    algo: str
    env_id: str
    env_kwargs: dict[str, Any]
    seed: int
    raw: dict[str, Any]  # the zoo hyperparameters as given (model.json records them)
    hp: HyperParams
    total: int  # env steps
    n_envs: int
    wrapper: Callable | None
    out: Path
    vec_env: str
    ray: RayOptions | None  # vec_env="ray" only
    tensorboard_log: str | Path | None
    eval_freq: int | None
    n_eval_episodes: int
    checkpoint_freq: int | None
    device: str
    verbose: int
    progress: bool
    callbacks: Iterable[Any]


def _check_options(
    algo: str, seed: int, vec_env: str, ray: RayOptions | None, address: str | None, cpus: float | None, gpus: float
) -> tuple[int, RayOptions]:
    """Check algo, seed, vec_env and the Ray settings (only with vec_env="ray"); returns the seed and settings."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    seed = check_seed(seed)
    if vec_env not in VEC_ENVS:
        raise ValueError(f"unknown vec_env {vec_env!r}; allowed: {', '.join(VEC_ENVS)}")
    ray = ray_options_of(ray, None, address, cpus, gpus)
    if vec_env == "ray":
        ray.validate(ray_run=True)  # before anything is written; the vec env does not check it again
    elif ray.address or ray.cpus_per_run is not None or ray.gpus_per_run != 0.0 or ray.workers is not None:
        raise ValueError("ray_address, cpus_per_run and gpus_per_run apply to vec_env='ray' only")
    return seed, ray


def _hyperparams(
    algo: str, env_id: str, hyperparams: dict | None, file: str | Path | None, total: int | None, n_envs: int | None
) -> tuple[dict[str, Any], HyperParams, int, int]:
    """The zoo hyperparameters as given and resolved, the env steps to train, the number of envs (default: file's)."""
    raw = load_hyperparams(algo, env_id, hyperparams, file)
    hp = resolve_hyperparams(raw)
    steps = int(total if total is not None else (hp.n_timesteps or 0))
    if steps <= 0:
        raise ValueError(f"total_timesteps={total!r} must be a positive int")
    return raw, hp, steps, int(n_envs or hp.n_envs)


def _check_run(run: _Run, resume: bool, overwrite: bool) -> tuple[tuple[int, Path] | None, dict[str, Any], Any]:
    """Before any worker starts or anything is written: one env of the run made in this process (its kwargs,
    wrappers and data checked: a worker's error would reach the user as an EOFError of the pipe) and the output
    folders checked (writable; checkpoints in ``out`` only with ``resume``, deleted with ``overwrite``). Returns
    the newest checkpoint (``(timesteps, zip path)``; ``None``: a fresh start), its saved state, the env's device."""
    probe = make_env(run.env_id, run.env_kwargs, run.wrapper)
    try:
        check_env_data(probe)
    finally:
        probe.close()
    writable_folder(run.out, "agent folder")
    if run.tensorboard_log:
        writable_folder(run.tensorboard_log, "TensorBoard folder")
    ckpt_dir = run.out / "checkpoints"
    ckpt = latest_checkpoint(ckpt_dir, run.algo) if resume else None
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"{str(run.out)!r} already holds checkpoints; pass resume=True to continue that run or "
                "overwrite=True to start afresh"
            )
        shutil.rmtree(ckpt_dir)
    state = {"episodes": 0}
    if ckpt is not None:
        state.update(json.loads(ckpt[1].with_suffix(".json").read_text()))
    probe_env: Any = probe.unwrapped  # duck-typed: a PruningEnv's base_config
    return ckpt, state, probe_env.base_config.device


def _train(run: _Run, ckpt: tuple[int, Path] | None, state: dict[str, Any], probe_device: Any) -> Agent:
    """Make the vec env, model and callbacks, train, save; resume from ``ckpt`` (with its ``state``) if not None."""
    start = ckpt[0] if ckpt is not None else 0
    venv = make_vec_env(
        run.env_id,
        run.n_envs,
        run.seed,
        run.env_kwargs,
        run.wrapper,
        start,
        run.vec_env,
        ray=run.ray,
        seed_pool=run.hp.seed_pool,
    )
    cls = algo_class(run.algo)
    model = None
    try:
        vn_path = run.out / "checkpoints" / f"{run.algo}_vecnormalize_{start}_steps.pkl"
        if ckpt is not None and vn_path.is_file():
            venv = VecNormalize.load(str(vn_path), venv)
            venv.training = True
        elif run.hp.normalize:
            venv = VecNormalize(venv, **run.hp.normalize_kwargs)
        model = _model(cls, venv, run, ckpt)
        log_dir = (
            Path(run.tensorboard_log) / env_label(run.env_id) / run.algo / f"seed{run.seed}"
            if run.tensorboard_log
            else None
        )
        model.set_logger(_logger(log_dir, run.verbose))
        episodes_cb = EpisodeTagsCallback(log_dir, start=state.get("episodes", 0))
        base_meta = _base_meta(run, start if ckpt is not None else None, model.device, probe_device)

        def meta() -> dict[str, Any]:
            return {**base_meta, "num_timesteps": int(model.num_timesteps), "episodes": episodes_cb.episodes}

        cbs, ckpt_cb = _callbacks(run, episodes_cb, meta, state, start)
        _learn(model, cbs, ckpt_cb, run.total, fresh=ckpt is None)
        vn = model.get_vec_normalize_env()
        zip_path = save_agent(model, run.out / "model", meta(), ObsNormalizer.from_vecnormalize(vn))
        if vn is not None:
            vn.save(str(run.out / "vecnormalize.pkl"))
    finally:
        if model is not None:
            model.logger.close()
        _close(venv)
    return Agent(model, meta=meta(), obs_normalizer=ObsNormalizer.from_vecnormalize(vn), path=zip_path)


def _model(cls: Any, venv: Any, run: _Run, ckpt: tuple[int, Path] | None) -> Any:
    """The SB3 model: ``ckpt``'s (with its replay buffer, if saved), else a new one seeded with the run's seed."""
    if ckpt is not None:
        model = cls.load(str(ckpt[1]), env=venv, device=run.device)
        buffer = run.out / "checkpoints" / f"{run.algo}_replay_buffer_{ckpt[0]}_steps.pkl"
        if buffer.is_file() and hasattr(model, "load_replay_buffer"):
            model.load_replay_buffer(str(buffer))
        return model
    hp = run.hp
    kwargs = dict(hp.algo_kwargs)
    if hp.noise_type is not None:
        noise = make_action_noise(hp.noise_type, hp.noise_std, int(venv.action_space.shape[0]))
        if noise is not None:
            kwargs["action_noise"] = noise
    return cls(env=venv, seed=run.seed, device=run.device, verbose=run.verbose, **kwargs)


def _base_meta(run: _Run, resumed_from: int | None, model_device: Any, probe_device: Any) -> dict[str, Any]:
    """What model.json records of the run, but its progress (``num_timesteps``, ``episodes``)."""
    hp, env_kwargs = run.hp, run.env_kwargs
    return {
        "name": f"{run.algo}_{env_kwargs.get('pruner', 'full')}",
        "algo": run.algo,
        "env_id": run.env_id,
        "env_kwargs": to_jsonable(env_kwargs),
        "pruner": env_kwargs.get("pruner", "full"),
        "env_wrapper": hp.env_wrapper,
        **({"training_wrapper": hp.training_wrapper} if hp.training_wrapper is not None else {}),
        **({"seed_pool": hp.seed_pool} if hp.seed_pool is not None else {}),
        "hyperparams": to_jsonable(run.raw),
        "seed": run.seed,
        "n_envs": run.n_envs,
        "total_timesteps": run.total,
        "eval_seeds": eval_seeds(run.n_eval_episodes),
        "seed_convention": SEED_CONVENTION,
        "resumed_from": resumed_from,
        "runtime": {
            **runtime(device=model_device),
            "env_device": str(resolve_device(probe_device)),
            "vec_env": run.vec_env,
            "env_threads": subproc_threads(run.n_envs) if uses_subproc(run.vec_env, run.n_envs) else None,
        },
    }


def _callbacks(
    run: _Run, episodes_cb: EpisodeTagsCallback, meta: Callable[[], dict], state: dict[str, Any], start: int
) -> tuple[list[BaseCallback], ResumableCheckpoint]:
    """The callbacks (episode tags, held-out evaluation, checkpoints, progress, the user's) and the checkpoint one."""

    def every(freq: int) -> int:  # env steps -> callback calls (one call per vec env step)
        return max(int(freq) // run.n_envs, 1) if freq else 0

    env_id, env_kwargs, n_eval = run.env_id, run.env_kwargs, run.n_eval_episodes
    eval_cb = None
    n_eval_freq = every(max(run.total // 10, 1) if run.eval_freq is None else run.eval_freq)
    if n_eval_freq and n_eval > 0:
        eval_cb = HeldOutEvalCallback(
            lambda: make_env(env_id, env_kwargs), eval_seeds(n_eval), n_eval_freq, run.out / "best_model", meta
        )
        if state.get("best_mean_reward") is not None:
            eval_cb.best_mean = float(state["best_mean_reward"])

    def ckpt_state() -> dict[str, Any]:
        best = eval_cb.best_mean if eval_cb is not None and eval_cb.best_mean > float("-inf") else None
        return {"episodes": episodes_cb.episodes, "best_mean_reward": best, "agent": meta()}

    save_every = every(run.total // 10 if run.checkpoint_freq is None else run.checkpoint_freq)
    ckpt_cb = ResumableCheckpoint(run.out / "checkpoints", run.algo, save_every, state=ckpt_state)
    cbs: list[BaseCallback] = [episodes_cb] + ([eval_cb] if eval_cb is not None else []) + [ckpt_cb]
    if run.progress:
        cbs.append(ProgressCallback(run.total, initial=start))
    cbs.extend(run.callbacks)
    return cbs, ckpt_cb


def _learn(model: Any, cbs: list[BaseCallback], ckpt_cb: ResumableCheckpoint, total: int, fresh: bool) -> None:
    """Train ``model`` up to ``total`` env steps, checkpointing at the end and on KeyboardInterrupt (re-raised)."""
    remaining = total - int(model.num_timesteps)
    if remaining > 0:
        cb_list = CallbackList(cbs)
        try:
            model.learn(remaining, callback=cb_list, reset_num_timesteps=fresh)
        except KeyboardInterrupt:
            ckpt_cb.save()
            cb_list.on_training_end()  # close writers, bars and the evaluation env
            raise
    if ckpt_cb.last_saved != int(model.num_timesteps):
        if getattr(ckpt_cb, "model", None) is None:  # learn() did not run
            ckpt_cb.init_callback(model)
        ckpt_cb.save()
