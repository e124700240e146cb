"""``PruningEnv``: a classifier's training run as a Gymnasium environment, one epoch per step."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prunegym.baselines import Pruner, PolicyContext, make_pruner
from prunegym.training import EpochResult, EvalResult, TrainingRun, check_seed, step_run, versions

from .action import ActionCodec
from .features import OBS_BOUND, FeatureContext, StepStats, device_stats, features_for, observe
from .info import ResetInfo, StepInfo
from .options import split_kwargs
from .record import EpisodeRecord
from .reference import reference_accuracy
from .rewards import NONFINITE_PENALTY, RewardInput, make_reward
from .tasks import task_config

__all__ = ["NONFINITE_PENALTY", "PruningEnv"]


@dataclass
class _Advance:
    """What the epochs of one step did (host-side numbers; ``last`` is the last epoch's result)."""

    results: list[EpochResult]
    flops: float
    trained: int
    wall: float
    trimmed: int
    error: str | None

    @property
    def last(self) -> EpochResult:
        return self.results[-1]


class PruningEnv(gym.Env):
    """A training run of ``task`` under a keep policy, one epoch (``decision_interval`` epochs) per step.

    Action: ``Box(-1, 1, (1 + len(pruner.knobs),))``; component 0 maps linearly to a prune ratio in
    ``[0, max_prune_ratio]``, the rest to the pruner's knobs (``encode_action`` / ``decode_action``,
    :class:`~prunegym.envs.action.ActionCodec`). Actions outside [-1, 1] are clipped; a wrong shape or NaN/inf
    raises ``ValueError``.
    Observation: ``feature_names`` (see :mod:`prunegym.envs.features`), float32 in [-10, 10].
    Reward: ``"tradeoff"`` (default), ``"lossless"``, ``"accuracy"``, a callable on :class:`RewardInput` or a
    :class:`~prunegym.envs.rewards.Reward` (see :mod:`prunegym.envs.rewards`). ``compute_weight``: price of
    the whole full-data run's training FLOPs in validation accuracy (``tradeoff``; default 0.1).
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
    the env's generator, seeded by it); without it, unseeded resets start runs from fresh entropy. Seeds
    (here and in ``reset(seed=...)``) are ints in ``[0, 2**63)``; others raise ``ValueError``.

    Episode: ``terminated`` when the epoch budget is spent or the run diverges (non-finite training or
    validation loss: ``info["error"]``, reward see :data:`NONFINITE_PENALTY`); ``truncated`` only when
    ``max_wall_time`` seconds (since ``reset``) have passed. ``info``: see :class:`~prunegym.envs.info.StepInfo`;
    everything in it is a deterministic function of the seed and the actions, except the wall-clock fields
    that ``record_wall_time=True`` adds.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(self, task: str = "synthetic-mlp", *, seed: int | None = None, render_mode: str | None = None,
                 **kwargs: Any):
        super().__init__()
        options, run_overrides = split_kwargs(kwargs)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'ansi', 'rgb_array'")
        self.task = task
        self.options = options
        self.base_config = task_config(task).replace(**run_overrides)
        self.pruner_name = options.pruner
        self.pruner_kwargs = options.pruner_kwargs
        self.pruner: Pruner = make_pruner(options.pruner, **options.pruner_kwargs)
        self.reward = make_reward(options.reward, lossless_penalty=options.lossless_penalty,
                                  lossless_tolerance=options.lossless_tolerance,
                                  nonfinite_penalty=options.nonfinite_penalty)
        self.reward_name = options.reward if isinstance(options.reward, str) else self.reward.name
        self.compute_weight = float(options.compute_weight)
        self.max_prune_ratio = float(options.max_prune_ratio)
        self.decision_interval = options.decision_interval
        self.record_wall_time = options.record_wall_time
        self.max_wall_time = options.max_wall_time
        self.nonfinite_penalty = float(options.nonfinite_penalty)
        self.render_mode = render_mode
        self._budget_range = options.budget_range()
        self._default_seed = None if seed is None else check_seed(seed)
        self._first_reset = True
        # Everything needed to rebuild this env (for episode records and replay); JSON-able unless ``reward``
        # is a callable or an object.
        self.env_kwargs = {"task": task, **options.record_kwargs(), **run_overrides}
        self.knobs = self.pruner.knobs
        self.codec = ActionCodec(self.max_prune_ratio, self.knobs)
        self.action_space = spaces.Box(-1.0, 1.0, (1 + len(self.knobs),), np.float32)
        self.features = features_for(options.features, budget=self._budget_range is not None)
        self.feature_names = tuple(f.name for f in self.features)
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (len(self.features),), np.float32)
        self.epochs = self.base_config.epochs
        self.run: TrainingRun | None = None
        self.compute_budget: float | None = None
        self._done = True
        self._last_info: dict[str, Any] = {}
        self._val_accuracies: list[float] = []
        self._kept_fractions: list[float] = []

    # -- actions -------------------------------------------------------------------------------------------
    @property
    def action_names(self) -> tuple[str, ...]:
        return self.codec.names

    @property
    def policy_context(self) -> PolicyContext:
        """What a fixed policy needs of this env: pruner, epochs, action codec and feature layout."""
        return PolicyContext(pruner=self.pruner_name, epochs=self.epochs, codec=self.codec,
                             feature_names=self.feature_names, decision_interval=self.decision_interval)

    def encode_action(self, prune_ratio: float = 0.0, **knobs: float) -> np.ndarray:
        """The action vector for ``prune_ratio`` in ``[0, max_prune_ratio]`` and the pruner's knob values
        (missing knobs take their defaults)."""
        return np.asarray(self.codec.encode(prune_ratio, **knobs), dtype=np.float32)

    def decode_action(self, action) -> dict[str, float]:
        """``{"prune_ratio": r, knob: value, ...}`` of an action vector (validated, clipped to [-1, 1])."""
        return self.codec.decode(self._check_action(action))

    def _check_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action {action!r} is not numeric; expected shape {self.action_space.shape} with "
                             f"values in [-1, 1] ({', '.join(self.action_names)})") from exc
        if a.ndim == 0 and self.action_space.shape == (1,):
            a = a.reshape(1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}; expected {self.action_space.shape} with values in "
                             f"[-1, 1] ({', '.join(self.action_names)})")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action {a.tolist()} has NaN or inf; expected finite values in [-1, 1] "
                             f"of shape {self.action_space.shape}")
        return np.clip(a, -1.0, 1.0)

    # -- episode -------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._first_reset and self._default_seed is not None:
            seed = int(self._default_seed)
        if seed is not None:
            seed = check_seed(seed)  # [0, 2**63): larger seeds would alias smaller ones
        self._first_reset = False
        super().reset(seed=seed)
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self.compute_budget = self._episode_budget(options or {})
        self.run_seed = run_seed
        self.run = run = TrainingRun(self.base_config.replace(seed=run_seed))
        self.pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
        val = run.evaluate("val")
        self._initial_val_accuracy = val.accuracy
        self.reward.reset(val.accuracy)
        self._stats = StepStats(val_loss=val.loss, val_accuracy=val.accuracy, prev_val_loss=val.loss,
                                prev_val_accuracy=val.accuracy)
        self._actions: list[list[float]] = []
        self._kept_fractions = []
        self._val_accuracies = []
        self._return = 0.0
        self._start = time.perf_counter()
        self._done = False
        info = ResetInfo(epoch=0, val_loss=val.loss, val_accuracy=val.accuracy, seed=run_seed,
                         compute_budget=self.compute_budget).to_dict()
        self._last_info = info
        return self._observe(), dict(info)

    def _episode_budget(self, options: dict) -> float | None:
        """This episode's budget: ``options["compute_budget"]``, else the env's (drawn from its range)."""
        unknown = sorted(set(options) - {"compute_budget"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; allowed: compute_budget")
        if "compute_budget" in options:
            b = options["compute_budget"]
            if b is None:
                if self._budget_range is not None:
                    raise ValueError("compute_budget=None at reset, but this env has a budget; make an env "
                                     "without compute_budget for unbudgeted episodes")
                return None
            if self._budget_range is None:
                raise ValueError("reset(options={'compute_budget': ...}) needs an env made with compute_budget "
                                 "(its observation has the budget features)")
            if not (isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 < float(b) <= 1.0):
                raise ValueError(f"compute_budget={b!r} must be a fraction in (0, 1]")
            return float(b)
        if self._budget_range is None:
            return None
        lo, hi = self._budget_range
        return lo if lo == hi else float(lo + (hi - lo) * self.np_random.random())

    def step(self, action):
        if self.run is None or self._done:
            raise RuntimeError("call reset() before step() (the episode is over or has not started)")
        a = self._check_action(action)
        decision = self.codec.decode(a)
        run = self.run
        adv = self._advance(decision)
        val = run.evaluate("val")
        error = adv.error
        if error is None and not math.isfinite(val.loss):
            error = f"non-finite validation loss ({val.loss}) after epoch {adv.last.epoch}"
        self._remember(val, adv)
        terminated = run.done or error is not None
        info = self._step_info(decision, adv, val, error)
        reward = self._reward(val, adv, terminated, error, info)
        self._return += reward
        self._actions.append(a.tolist())  # validated and clipped, float64: replays bit-for-bit
        self._kept_fractions.append(self._stats.kept_fraction)
        self._val_accuracies.append(val.accuracy)
        elapsed = time.perf_counter() - self._start
        if self.record_wall_time:
            info.wall_time, info.wall_time_total = adv.wall, elapsed
        truncated = not terminated and self.max_wall_time is not None and elapsed > self.max_wall_time
        if terminated or truncated:
            self._finish(info)
        out = info.to_dict()
        self._last_info = out
        return self._observe(), reward, terminated, truncated, out

    def _advance(self, decision: dict[str, float]) -> _Advance:
        """Train the step's epochs under ``decision`` (within the budget); stop at a non-finite loss."""
        run = self.run
        assert run is not None
        results: list[EpochResult] = []
        flops, trained, wall, trimmed, error = 0.0, 0, 0.0, 0, None
        for _ in range(min(self.decision_interval, run.epochs - run.epoch)):
            res = step_run(run, self.pruner, decision, max_flops=self._flops_left())
            results.append(res)
            flops += res.flops
            trained += int(res.indices.numel())
            wall += res.wall_time
            trimmed += int(res.extra.get("budget_trimmed", 0))
            if not math.isfinite(res.train_loss) and res.indices.numel() > 0:
                error = f"non-finite training loss ({res.train_loss}) at epoch {res.epoch}"
                break
        return _Advance(results, flops, trained, wall, trimmed, error)

    def _flops_left(self) -> float | None:
        if self.compute_budget is None:
            return None
        m = self.run.meter
        return self.compute_budget * m.full_run_flops - m.total_flops

    def _remember(self, val: EvalResult, adv: _Advance) -> None:
        """Update the step memory the observation reads."""
        st, run = self._stats, self.run
        st.prev_val_loss, st.prev_val_accuracy = st.val_loss, st.val_accuracy
        st.val_loss, st.val_accuracy = val.loss, val.accuracy
        st.record_val(run.epoch)
        st.kept_fraction = adv.trained / (run.num_train * len(adv.results))
        st.train_loss = adv.last.train_loss if adv.last.indices.numel() else st.train_loss
        st.last_trained = adv.last.indices

    def _step_info(self, decision: dict[str, float], adv: _Advance, val: EvalResult, error: str | None) -> StepInfo:
        run = self.run
        last = adv.last
        info = StepInfo(
            epoch=run.epoch, prune_ratio=decision["prune_ratio"],
            claimed_prune_ratio=sum(r.claimed_prune_ratio for r in adv.results) / len(adv.results), action=decision,
            kept_fraction=self._stats.kept_fraction,
            planned_fraction=sum(r.planned_fraction for r in adv.results) / len(adv.results),
            compute_fraction_step=adv.flops / run.meter.full_run_flops,
            compute_fraction_total=run.meter.total_fraction,
            selector_compute_fraction_step=sum(r.passes.selector_flops for r in adv.results) / run.meter.full_run_flops,
            selector_compute_fraction_total=run.meter.total_passes.selector_flops / run.meter.full_run_flops,
            flops_step=adv.flops, train_loss=last.train_loss,
            train_accuracy=last.train_accuracy, val_loss=val.loss, val_accuracy=val.accuracy, lr=last.lr,
            error=error)
        if self.compute_budget is not None:
            info.compute_budget = self.compute_budget
            left = max(0.0, self.compute_budget - run.meter.total_fraction)
            info.budget_left, info.budget_trimmed = left / self.compute_budget, adv.trimmed
        return info

    def _reward(self, val: EvalResult, adv: _Advance, terminated: bool, error: str | None, info: StepInfo) -> float:
        ref = None
        if terminated and self.reward.needs_reference:
            ref = info.reference_accuracy = reference_accuracy(self.run.config)
        r = RewardInput(
            val_accuracy=val.accuracy, prev_val_accuracy=self._stats.prev_val_accuracy,
            initial_val_accuracy=self._initial_val_accuracy, compute_fraction_step=info.compute_fraction_step,
            compute_fraction_total=info.compute_fraction_total, terminated=terminated,
            compute_weight=self.compute_weight, reference_accuracy=ref, compute_budget=self.compute_budget)
        return float(self.reward.on_error(r) if error is not None else self.reward.step(r))

    def _finish(self, info: StepInfo) -> None:
        """End of the episode: test metrics, the return and the episode record."""
        test = self.run.evaluate("test")
        info.test_loss, info.test_accuracy, info.episode_return = test.loss, test.accuracy, self._return
        info.episode_record = EpisodeRecord(
            env_kwargs=self._record_kwargs(), seed=self.run_seed, actions=[list(x) for x in self._actions],
            task=self.task, env_id=self.spec.id if self.spec is not None else None,
            compute_budget=self.compute_budget if self._budget_range is not None else None,
            versions=versions()).to_dict()  # replay warns when it runs under other versions
        self._done = True

    def _observe(self) -> np.ndarray:
        run = self.run
        ctx = FeatureContext(run, self._stats, device_stats(run, self._stats), self.compute_budget)
        return observe(ctx, self.features)

    def _record_kwargs(self) -> dict:
        """A copy of ``env_kwargs`` the caller may mutate (a callable reward is shared, not copied)."""
        kwargs = copy.deepcopy({k: v for k, v in self.env_kwargs.items() if k != "reward"})
        kwargs["reward"] = self.env_kwargs["reward"]
        return kwargs

    # -- rendering -----------------------------------------------------------------------------------------
    def render(self):
        """``"ansi"``: one line of text; ``"rgb_array"``: a ``[64, 128, 3]`` uint8 chart with one column per
        step, validation accuracy (green, top half) and kept fraction (blue, bottom half); ``None``: nothing."""
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        if self.render_mode != "ansi":
            return None
        i = self._last_info
        return (f"epoch {i.get('epoch', 0)}/{self.epochs} prune_ratio {i.get('prune_ratio', 0):.2f} "
                f"kept {i.get('kept_fraction', 1):.2f} compute {i.get('compute_fraction_total', 0):.3f} "
                f"val_acc {i.get('val_accuracy', 0):.4f}")

    def _render_rgb(self) -> np.ndarray:
        h, w = 64, 128
        half = h // 2
        img = np.full((h, w, 3), 255, dtype=np.uint8)
        n_steps = math.ceil(self.epochs / self.decision_interval)
        for t, (acc, kept) in enumerate(zip(self._val_accuracies, self._kept_fractions)):
            x0 = t * w // n_steps
            x1 = max(x0 + 1, (t + 1) * w // n_steps)
            acc_px = round(min(max(acc if math.isfinite(acc) else 0.0, 0.0), 1.0) * half)
            kept_px = round(min(max(kept, 0.0), 1.0) * half)
            img[half - acc_px:half, x0:x1] = (40, 160, 40)
            img[h - kept_px:h, x0:x1] = (40, 80, 200)
        return img

    def close(self):
        self.run = None
        self._done = True
