"""``PruningVectorEnv``: K episodes of one task as a ``gymnasium.vector.VectorEnv``, their training runs advanced
in lockstep as one batched model (:class:`~prunegym.training.BatchedTrainingRun`).

Sub-env ``i`` is a ``PruningEnv`` of the same arguments in everything it computes: its own pruner, reward
object, budget, step memory and episode record (:class:`~prunegym.envs.episode_state.EpisodeState`, shared
with ``PruningEnv``), the same features, action codec and ``info`` keys. Only the engine differs: one
stacked model trains every sub-env's epoch at once, so weights, losses and metrics agree with
``PruningEnv``'s within float rounding (kept sets and FLOPs of rules that read no losses are identical; see
:mod:`prunegym.training.batched`).

Seeding follows ``PruningEnv`` and Gymnasium: ``reset(seed=s)`` gives sub-env ``i`` the run seed ``s + i``
and seeds its own generator with it (later unseeded resets draw run seeds and budgets from it, as
``PruningEnv`` does); a list gives each sub-env its seed (``None``: draw); ``seed=`` at construction is the
seed of the first unseeded reset. Autoreset: ``autoreset_mode`` ``NEXT_STEP`` (default, as Gymnasium's own
vector envs), ``SAME_STEP`` (``info["final_obs"]`` / ``info["final_info"]``) or ``DISABLED`` (reset ended
sub-envs with ``reset(options={"reset_mask": mask})``). A sub-env that ends early (divergence,
``max_wall_time``) restarts alone (:meth:`BatchedTrainingRun.reset_run`) while the others continue.
Infos are Gymnasium 1.x vector infos: a dict of arrays, each with a ``_key`` mask (``sub_envs[i].last_info``
is sub-env ``i``'s own dict). With ``record_wall_time``, a sub-env's ``wall_time`` is its share of the batched
epochs (their wall-clock divided by the runs trained).

Not supported: in-batch selectors (``pruner="pfb"``), models with BatchNorm (the CIFAR ResNet-18 tasks) and
streaming data (``streaming=True``, or a task of a registered map-style ``Dataset``, which streams unless
``streaming=False``: the batched engine keeps every split resident, so these raise ``ValueError`` at
construction rather than load the data whole); use ``PruningEnv`` (``gym.make_vec(...,
vectorization_mode="sync")``) for them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from prunegym.baselines import PRUNERS, Pruner, make_pruner
from prunegym.training import DRAWN_SEED_LIMIT, BatchedTrainingRun, RunConfig, check_seed, step_runs
from prunegym.training.streaming import uses_streaming

from .action import ActionCodec, PolicyInterface
from .episode_state import Advance, EpisodeState, check_action
from .features import OBS_BOUND, device_stats_rows, features_for
from .instances import episode_instance
from .options import split_kwargs
from .render import RENDER_MODES, render_episode
from .rewards import Reward, make_reward
from .sub_env import SubEnv
from .tasks import task_config

__all__ = ["PruningVectorEnv"]


def _check_resident(task: str, config: RunConfig) -> None:
    """Refuse a run config that streams its data (the batched engine keeps every split resident)."""
    if not uses_streaming(config):
        return
    why = (
        "streaming=True"
        if config.streaming
        else f"task {task!r} has a registered map-style Dataset, which streams (streaming=None acts as streaming=True)"
    )
    raise ValueError(
        f"{why}: PruningVectorEnv keeps the data resident and cannot stream it; use gym.make_vec(..., "
        "vectorization_mode='sync') (K PruningEnvs)"
        + (" or streaming=False to load the Dataset into memory" if not config.streaming else "")
    )


class PruningVectorEnv(PolicyInterface, VectorEnv):
    """``num_envs`` sub-envs of ``task`` (see the module docstring). Keyword arguments are those of
    ``PruningEnv`` (:class:`~prunegym.envs.options.EnvOptions` and ``RunConfig`` overrides), plus ``backend``
    (the batched engine's: ``"auto"``, ``"bmm"`` or ``"func"``) and ``autoreset_mode``.

    Spaces: ``single_observation_space`` / ``single_action_space`` are ``PruningEnv``'s, the batched ones
    ``[num_envs, F]`` and ``[num_envs, A]``. Per sub-env ``i``: ``episodes[i]``, ``pruners[i]``, ``rewards[i]``,
    ``rngs[i]`` (its generator of run seeds and budgets) and ``last_infos[i]``; ``sub_envs[i]`` exposes them
    (and ``run``, ``compute_budget``, ``run_seed``) with the env-wide attributes; ``get_attr(name)``
    and ``call(name, ...)`` return one value per sub-env, as ``SyncVectorEnv``'s do. ``render()`` returns one
    frame per sub-env.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(
        self,
        task: str = "synthetic-mlp",
        num_envs: int = 1,
        *,
        seed: int | None = None,
        render_mode: str | None = None,
        backend: str = "auto",
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        **kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive int")
        options, run_overrides = split_kwargs(kwargs)
        if PRUNERS[options.pruner].in_batch_selector:
            raise ValueError(
                f"pruner={options.pruner!r} selects rows inside each batch (an in-batch selector), which "
                "the batched engine behind PruningVectorEnv does not support; use PruningEnv "
                "(gym.make_vec(..., vectorization_mode='sync'))"
            )
        if render_mode not in (None, *RENDER_MODES):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'ansi', 'rgb_array'")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode={autoreset_mode!r}; allowed: "
                f"{', '.join(repr(m.value) for m in AutoresetMode)} or an AutoresetMode"
            ) from None
        self.num_envs = k = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.render_mode, self.backend = render_mode, backend
        self.task, self.options = task, options
        self.base_config = task_config(task).replace(**run_overrides)
        _check_resident(task, self.base_config)
        self.epochs, self.decision_interval = self.base_config.epochs, options.decision_interval
        self.pruner_name = options.pruner
        self.max_prune_ratio = float(options.max_prune_ratio)
        self.pruners: list[Pruner] = [make_pruner(options.pruner, **options.pruner_kwargs) for _ in range(k)]
        self.rewards: list[Reward] = [self._make_reward() for _ in range(k)]
        self.env_kwargs = {"task": task, **options.record_kwargs(), **run_overrides}
        self.codec = ActionCodec(self.max_prune_ratio, self.pruners[0].knobs)
        self._budget_range = options.budget_range()
        self._regimes = options.regime_ranges()
        self.features = features_for(options.features, budget=self._budget_range is not None)
        self.feature_names = tuple(f.name for f in self.features)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1 + len(self.codec.knobs),), np.float32)
        self.single_observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (len(self.features),), np.float32)
        self.action_space = batch_space(self.single_action_space, k)
        self.observation_space = batch_space(self.single_observation_space, k)
        self.batch: BatchedTrainingRun | None = None
        self.episodes: list[EpisodeState | None] = [None] * k
        self.sub_envs = [SubEnv(self, i) for i in range(k)]
        self._default_seed = seed
        self.rngs: list[np.random.Generator | None] = [None] * k
        self._obs = np.zeros((k, len(self.features)), dtype=np.float32)
        self.last_infos: list[dict[str, Any]] = [{} for _ in range(k)]
        self._ended = np.zeros(k, dtype=bool)  # episode over: autoreset (NEXT_STEP) or reset_mask (DISABLED)

    def _make_reward(self) -> Reward:
        o = self.options
        spec = copy.deepcopy(o.reward) if isinstance(o.reward, Reward) else o.reward  # each sub-env its own state
        return make_reward(spec, **o.reward_kwargs)

    # -- what policies and the SB3 adapter read ------------------------------------------------------------
    def get_attr(self, name: str) -> tuple[Any, ...]:
        """``name`` of every sub-env (see :class:`~prunegym.envs.sub_env.SubEnv`)."""
        return tuple(getattr(s, name) for s in self.sub_envs)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """``name(*args, **kwargs)`` on every sub-env (an attribute's value when it is not callable)."""
        values = self.get_attr(name)
        return tuple(v(*args, **kwargs) if callable(v) else v for v in values)

    # -- reset ---------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        """Reset every sub-env (or those of ``options["reset_mask"]``, a bool array ``[num_envs]``); ``seed``:
        an int (sub-env ``i`` gets ``seed + i``), a list of ints or ``None`` per sub-env, or ``None``.
        ``options["compute_budget"]``: one budget for every reset sub-env, or a list of one per sub-env."""
        k = self.num_envs
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(k, dtype=bool)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (k,) and mask.any()):
            raise ValueError(
                f"options['reset_mask'] must be a bool numpy array of shape ({k},) with a True entry, got {mask!r}"
            )
        if self.batch is None and not mask.all():
            raise ValueError("the first reset must reset every sub-env (no reset_mask)")
        if seed is None:
            seeds: list[int | None] = [None] * k
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            super().reset(seed=int(seed))
            seeds = [int(seed) + i for i in range(k)]
        else:
            seeds = list(seed)  # type: ignore[arg-type]
            if len(seeds) != k:
                raise ValueError(f"seed is a list of {len(seeds)} values; it needs num_envs={k} (ints or None)")
        idx = [i for i in range(k) if mask[i]]
        opts = [dict(options) for _ in idx]
        budgets = options.get("compute_budget")
        if isinstance(budgets, (list, tuple, np.ndarray)):  # one budget per sub-env
            if len(budgets) != k:
                raise ValueError(f"options['compute_budget'] has {len(budgets)} values; it needs num_envs={k}")
            for o, i in zip(opts, idx):
                o["compute_budget"] = float(budgets[i]) if isinstance(budgets[i], np.floating) else budgets[i]
        self._start(idx, [seeds[i] for i in idx], opts)
        self._ended[mask] = False
        infos: dict[str, Any] = {}
        for i in idx:
            infos = self._add_info(infos, self._episode(i).reset_info, i)
        return self._obs.copy(), infos

    def _episode(self, i: int) -> EpisodeState:
        ep = self.episodes[i]
        if ep is None:
            raise RuntimeError(f"sub-env {i} has no episode: call reset() first")
        return ep

    def _batch(self) -> BatchedTrainingRun:
        if self.batch is None:
            raise RuntimeError("call reset() first")
        return self.batch

    def _run_seed(self, i: int, seed: int | None) -> int:
        """Sub-env ``i``'s run seed for a reset with ``seed`` (as ``PruningEnv.reset``: a seed also seeds the
        sub-env's generator; without one the first reset uses ``seed=`` of the constructor, later ones draw)."""
        if seed is None and self.rngs[i] is None and self._default_seed is not None:
            seed = int(self._default_seed) + i
        if seed is not None:
            seed = check_seed(seed, "seed", where=f" of sub-env {i}")
            self.rngs[i] = seeding.np_random(seed)[0]
            return seed
        rng = self.rngs[i]
        if rng is None:
            rng = self.rngs[i] = seeding.np_random()[0]
        return int(rng.integers(0, DRAWN_SEED_LIMIT))

    def _start(self, idx: list[int], seeds: list[int | None], options: list[dict]) -> None:
        """Start new episodes in sub-envs ``idx`` (one batched validation pass)."""
        run_seeds, instances = [], []
        for i, s, o in zip(idx, seeds, options):
            run_seeds.append(self._run_seed(i, s))
            rng = self.rngs[i]
            assert rng is not None  # set by _run_seed
            instances.append(episode_instance(o, self._budget_range, self._regimes, rng))
        overrides = [inst.run_overrides() for inst in instances]
        if self.batch is None:
            self.batch = BatchedTrainingRun(
                self.base_config,
                run_seeds,
                backend=self.backend,
                overrides=overrides if self._regimes else None,
                per_run_data=bool(self._regimes),
            )
        else:
            for i, s, o in zip(idx, run_seeds, overrides):
                self.batch.reset_run(i, s, **o)
        batch = self.batch
        for i in idx:
            run = batch.runs[i]
            self.pruners[i].reset(run.num_train, batch.epochs, batch.device, run.generator("pruner"))
        val = batch.evaluate("val")
        for i, s, inst in zip(idx, run_seeds, instances):
            self.episodes[i] = ep = EpisodeState(batch.runs[i], s, inst, self.rewards[i], val[i], self.options)
            self.last_infos[i] = ep.reset_info
        self._observe(idx)

    def _observe(self, idx: list[int]) -> None:
        """Observations of sub-envs ``idx`` into ``_obs`` (the device statistics of all runs in one host sync)."""
        batch = self._batch()
        dev = device_stats_rows(
            batch.score_store,
            self.num_envs,
            [ep.stats.last_trained if ep is not None else None for ep in self.episodes],
            batch.data.sizes,
        )
        for i in idx:
            self._obs[i] = self._episode(i).observe(self.features, dev[i])

    # -- step ----------------------------------------------------------------------------------------------
    def _check_actions(self, actions) -> np.ndarray:
        shape = (self.num_envs, *(self.single_action_space.shape or ()))
        try:
            a = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"actions {actions!r} are not numeric; expected shape {shape}") from exc
        if a.shape != shape:
            raise ValueError(
                f"actions have shape {a.shape}; expected {shape} (num_envs x "
                f"{', '.join(self.action_names)}) with values in [-1, 1]"
            )
        return a

    def step(self, actions):
        if self.batch is None or self.closed:
            raise RuntimeError("call reset() before step()")
        k, mode = self.num_envs, self.autoreset_mode
        a_all = self._check_actions(actions)
        restart = [i for i in range(k) if self._ended[i]] if mode == AutoresetMode.NEXT_STEP else []
        if mode == AutoresetMode.DISABLED and self._ended.any():
            raise RuntimeError(
                f"sub-env(s) {np.flatnonzero(self._ended).tolist()} ended; with autoreset_mode "
                "DISABLED reset them with reset(options={'reset_mask': mask}) before step()"
            )
        stepping = [i for i in range(k) if i not in restart]
        acts = {i: check_action(a_all[i], self.single_action_space.shape, self.action_names) for i in stepping}
        decisions = {i: self.codec.decode(acts[i]) for i in stepping}
        if restart:
            self._start(restart, [None] * len(restart), [{}] * len(restart))
        advances = self._train(decisions)
        val = self._batch().evaluate("val")
        rewards = np.zeros(k, dtype=np.float64)
        terminated, truncated = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
        step_infos = {}
        for i in stepping:
            rewards[i], terminated[i], truncated[i], step_infos[i] = self._episode(i).conclude(
                acts[i], decisions[i], advances[i], val[i]
            )
        ending = [i for i in stepping if terminated[i] or truncated[i]]
        if ending:
            test = self._batch().evaluate("test")
            env_id = self.spec.id if self.spec is not None else None
            for i in ending:
                self._episode(i).finish(
                    step_infos[i], test[i], self._record_kwargs(), self.task, env_id, self._budget_range is not None
                )
        infos: dict[str, Any] = {}
        for i in restart:
            infos = self._add_info(infos, self._episode(i).reset_info, i)
        self._observe(stepping)
        for i in stepping:
            info = step_infos[i].to_dict()
            self.last_infos[i] = info
            if mode == AutoresetMode.SAME_STEP and i in ending:
                infos = self._add_info(infos, {"final_obs": self._obs[i].copy(), "final_info": info}, i)
            else:
                infos = self._add_info(infos, info, i)
        if mode == AutoresetMode.SAME_STEP and ending:
            self._start(ending, [None] * len(ending), [{}] * len(ending))
            for i in ending:
                infos = self._add_info(infos, self._episode(i).reset_info, i)
        else:
            self._ended[:] = terminated | truncated
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _train(self, decisions: dict[int, dict[str, float]]) -> dict[int, Advance]:
        """Train the step's epochs of the sub-envs in ``decisions`` as batched epochs (a sub-env drops out of
        the step when its epochs are done or its training loss turns non-finite)."""
        advances = {i: Advance() for i in decisions}
        left = {i: self._episode(i).epochs_this_step for i in decisions}
        while any(n > 0 for n in left.values()):
            todo = [decisions.get(i) if left.get(i, 0) > 0 else None for i in range(self.num_envs)]
            caps = [self._episode(i).flops_left() if todo[i] is not None else None for i in range(self.num_envs)]
            results = step_runs(self._batch(), self.pruners, todo, caps)
            for i, res in enumerate(results):
                if res is not None:
                    left[i] = 0 if advances[i].add(res) else left[i] - 1
        return advances

    def _record_kwargs(self) -> dict:
        """A copy of ``env_kwargs`` the caller may mutate (a callable reward is shared, not copied)."""
        kwargs = copy.deepcopy({key: v for key, v in self.env_kwargs.items() if key != "reward"})
        kwargs["reward"] = self.env_kwargs["reward"]
        return kwargs

    # -- rendering, closing --------------------------------------------------------------------------------
    def render(self) -> tuple[Any, ...] | None:
        """One frame per sub-env (``PruningEnv.render``'s: a line of text for ``"ansi"``, a ``[64, 128, 3]``
        uint8 chart for ``"rgb_array"``); ``None`` without a render mode."""
        if self.render_mode is None:
            return None
        return tuple(
            render_episode(self.render_mode, self.last_infos[i], self.episodes[i], self.epochs, self.decision_interval)
            for i in range(self.num_envs)
        )

    def close_extras(self, **kwargs: Any) -> None:
        """Release the batched runs (their tensors)."""
        self.batch = None
        self.episodes = [None] * self.num_envs
