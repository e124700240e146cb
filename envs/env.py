"""``PruningEnv``: a classifier's training run as a Gymnasium environment, one epoch per step."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prunegym.baselines import Pruner, make_pruner
from prunegym.training import DRAWN_SEED_LIMIT, TrainingRun, check_seed, step_run

from .action import ActionCodec, PolicyInterface
from .episode_state import Advance, EpisodeState, check_action
from .features import OBS_BOUND, StepStats, features_for
from .instances import episode_instance
from .options import split_kwargs
from .render import RENDER_MODES, render_episode
from .rewards import NONFINITE_PENALTY, make_reward
from .tasks import task_config

__all__ = ["NONFINITE_PENALTY", "PruningEnv"]


class PruningEnv(PolicyInterface, gym.Env):
    """A training run of ``task`` under a keep policy, one epoch (``decision_interval`` epochs) per step.

    Action: ``Box(-1, 1, (1 + len(pruner.knobs),))``; component 0 maps linearly to a prune ratio in
    ``[0, max_prune_ratio]``, the rest to the pruner's knobs (``encode_action`` / ``decode_action``,
    :class:`~prunegym.envs.action.ActionCodec`). Actions outside [-1, 1] are clipped; a wrong shape or NaN/inf
    raises ``ValueError``.
    Observation: ``feature_names`` (see :mod:`prunegym.envs.features`), float32 in [-10, 10].
    Reward: ``"tradeoff"`` (default), ``"lossless"``, ``"accuracy"``, a callable on :class:`RewardInput` or a
    :class:`~prunegym.envs.rewards.Reward` (see :mod:`prunegym.envs.rewards`). ``reward_kwargs``: the reward's
    own parameters, passed whole to its class: ``compute_weight`` (``tradeoff``: price of the whole full-data
    run's training FLOPs in validation accuracy, default 0.1), ``penalty`` and ``tolerance`` (``lossless``),
    ``nonfinite_penalty`` (all). The flat ``compute_weight=``, ``lossless_penalty=``, ``lossless_tolerance=``
    and ``nonfinite_penalty=`` set the same parameters (not both ways at once); records keep them flat.
    ``compute_budget``: ``b`` in (0, 1] caps the episode's training FLOPs at ``b`` times the full-data run's
    (every pass included): a plan that would spend more than what is left is cut to fit
    (``info["budget_trimmed"]``), and the observation gains ``compute_budget`` and ``budget_left``; a range
    ``(lo, hi)`` draws each episode's budget uniformly from the env's generator at ``reset`` (recorded and
    replayed); ``reset(options={"compute_budget": b})`` sets one episode's budget.
    ``features``: names of the observation features (default: all of ``FEATURE_NAMES``, plus the budget
    features when there is a budget).
    Any :class:`~prunegym.training.RunConfig` field (``epochs``, ``train_size``, ``batch_size``, ``device``,
    ``lr``, ``data_root``, ...) may be passed to override the task's preset; the other keyword arguments are
    :class:`~prunegym.envs.options.EnvOptions`.
    ``seed``: the run seed of the first ``reset()`` without a seed (later unseeded resets draw new ones from
    the env's generator, seeded by it); without it, unseeded resets start runs from fresh entropy.

    Episode: ``terminated`` when the epoch budget is spent or the run diverges (non-finite training or
    validation loss: ``info["error"]``, reward see :data:`NONFINITE_PENALTY`); ``truncated`` only when
    ``max_wall_time`` seconds (since ``reset``) have passed. ``info``: see :class:`~prunegym.envs.info.StepInfo`;
    everything in it is a deterministic function of the seed and the actions, except the wall-clock fields
    that ``record_wall_time=True`` adds.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(
        self, task: str = "synthetic-mlp", *, seed: int | None = None, render_mode: str | None = None, **kwargs: Any
    ):
        super().__init__()
        options, run_overrides = split_kwargs(kwargs)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'ansi', 'rgb_array'")
        self.task = task
        self.options = options
        self.base_config = task_config(task).replace(**run_overrides)
        self.pruner_name = options.pruner
        self.pruner: Pruner = make_pruner(options.pruner, **options.pruner_kwargs)
        self.reward = make_reward(options.reward, **options.reward_kwargs)
        self.max_prune_ratio = float(options.max_prune_ratio)
        self.decision_interval = options.decision_interval
        self.render_mode = render_mode
        self._budget_range = options.budget_range()
        self._regimes = options.regime_ranges()
        self._default_seed = None if seed is None else check_seed(seed)
        self._first_reset = True
        # Everything needed to rebuild this env (for episode records and replay); JSON-able unless ``reward``
        # is a callable or an object.
        self.env_kwargs = {"task": task, **options.record_kwargs(), **run_overrides}
        self.codec = ActionCodec(self.max_prune_ratio, self.pruner.knobs)
        self.action_space: spaces.Box = spaces.Box(-1.0, 1.0, (1 + len(self.codec.knobs),), np.float32)
        self.features = features_for(options.features, budget=self._budget_range is not None)
        self.feature_names = tuple(f.name for f in self.features)
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (len(self.features),), np.float32)
        self.epochs = self.base_config.epochs
        self.run: TrainingRun | None = None
        self.episode: EpisodeState | None = None
        self._done = True
        self._last_info: dict[str, Any] = {}

    # -- actions -------------------------------------------------------------------------------------------
    def decode_action(self, action) -> dict[str, float]:
        """``{"prune_ratio": r, knob: value, ...}`` of an action vector (validated, clipped to [-1, 1])."""
        return self.codec.decode(self._check_action(action))

    def _check_action(self, action) -> np.ndarray:
        return check_action(action, self.action_space.shape, self.action_names)

    # -- episode -------------------------------------------------------------------------------------------
    @property
    def compute_budget(self) -> float | None:
        """This episode's compute budget (a fraction of the full-data run's FLOPs; ``None``: none)."""
        return self.episode.compute_budget if self.episode is not None else None

    @property
    def run_seed(self) -> int | None:
        return self.episode.seed if self.episode is not None else None

    @property
    def _stats(self) -> StepStats | None:
        return self.episode.stats if self.episode is not None else None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._first_reset and self._default_seed is not None:
            seed = int(self._default_seed)
        if seed is not None:
            seed = check_seed(seed)  # [0, 2**63): larger seeds would alias smaller ones
        self._first_reset = False
        super().reset(seed=seed)
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(0, DRAWN_SEED_LIMIT))
        instance = episode_instance(options or {}, self._budget_range, self._regimes, self.np_random)
        self.run = run = TrainingRun(self.base_config.replace(seed=run_seed, **instance.run_overrides()))
        self.pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
        self.episode = ep = EpisodeState(run, run_seed, instance, self.reward, run.evaluate("val"), self.options)
        self._done = False
        self._last_info = ep.reset_info
        return ep.observe(self.features), dict(ep.reset_info)

    def step(self, action):
        if self.run is None or self._done:
            raise RuntimeError("call reset() before step() (the episode is over or has not started)")
        a = self._check_action(action)
        decision = self.codec.decode(a)
        ep, run = self.episode, self.run
        adv = Advance()
        for _ in range(ep.epochs_this_step):
            if adv.add(step_run(run, self.pruner, decision, max_flops=ep.flops_left())):
                break
        reward, terminated, truncated, info = ep.conclude(a, decision, adv, run.evaluate("val"))
        if terminated or truncated:
            ep.finish(
                info,
                run.evaluate("test"),
                self._record_kwargs(),
                self.task,
                self.spec.id if self.spec is not None else None,
                self._budget_range is not None,
            )
            self._done = True
        out = info.to_dict()
        self._last_info = out
        return ep.observe(self.features), reward, terminated, truncated, out

    def _record_kwargs(self) -> dict:
        """A copy of ``env_kwargs`` the caller may mutate (a callable reward is shared, not copied)."""
        kwargs = copy.deepcopy({k: v for k, v in self.env_kwargs.items() if k != "reward"})
        kwargs["reward"] = self.env_kwargs["reward"]
        return kwargs

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self):
        """``"ansi"``: one line of text; ``"rgb_array"``: a ``[64, 128, 3]`` uint8 chart with one column per
        step, validation accuracy (green, top half) and kept fraction (blue, bottom half); ``None``: nothing."""
        return render_episode(self.render_mode, self._last_info, self.episode, self.epochs, self.decision_interval)

    def close(self):
        self.run = None
        self._done = True
