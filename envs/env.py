"""``PruningEnv``: a classifier's training run as a Gymnasium environment, one epoch per step."""
from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import fields
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prunegym.baselines import PRUNERS, ActionCodec, Pruner, make_pruner
from prunegym.training import RunConfig, TrainingRun, check_seed, versions

from .features import FEATURE_NAMES, OBS_BOUND, StepStats, observe
from .reference import reference_accuracy
from .rewards import DEFAULT_COMPUTE_WEIGHT, REWARDS, RewardInput, lossless_reward, tradeoff_reward
from .tasks import task_config

__all__ = ["PruningEnv", "NONFINITE_PENALTY"]

# Extra cost of a diverged run. The step whose training (or validation) loss becomes non-finite ends the
# episode; its reward is what the reward function gives a run ending there at zero validation accuracy,
# minus ``nonfinite_penalty``. So a diverged ``tradeoff`` episode returns
# ``-initial val acc - compute_weight * compute used - 1`` and a diverged ``lossless`` one
# ``-compute used - penalty * max(0, reference - tolerance) - 1``: worse than finishing at any accuracy,
# diverging never pays (a model with NaN weights still "predicts" class 0, so its measured accuracy is not 0).
NONFINITE_PENALTY = 1.0

_RUN_FIELDS = tuple(f.name for f in fields(RunConfig))


class PruningEnv(gym.Env):
    """A training run of ``task`` under a keep policy, one epoch (``decision_interval`` epochs) per step.

    Action: ``Box(-1, 1, (1 + len(pruner.knobs),))``; component 0 maps linearly to a prune ratio in
    ``[0, max_prune_ratio]``, the rest to the pruner's knobs (``encode_action`` / ``decode_action``).
    Actions outside [-1, 1] are clipped; a wrong shape or NaN/inf raises ``ValueError``.
    Observation: ``feature_names`` (see ``prunegym.envs.features.FEATURE_DOCS``), float32 in [-10, 10].
    Reward: ``"tradeoff"`` (default), ``"lossless"`` or a callable on :class:`RewardInput` (see
    ``prunegym.envs.rewards``). ``compute_weight``: price of the whole full-data run's training FLOPs in
    validation accuracy (``tradeoff``; default 0.1).
    Any :class:`RunConfig` field (``epochs``, ``train_size``, ``batch_size``, ``device``, ``lr``,
    ``data_root``, ...) may be passed to override the task's preset.
    ``seed``: the run seed of the first ``reset()`` without a seed (later unseeded resets draw new ones from
    the env's generator, seeded by it); without it, unseeded resets start runs from fresh entropy. Seeds
    (here and in ``reset(seed=...)``) are ints in ``[0, 2**63)``; others raise ``ValueError``.

    Episode: ``terminated`` when the epoch budget is spent or the run diverges (non-finite training or
    validation loss: ``info["error"]``, reward see :data:`NONFINITE_PENALTY`); ``truncated`` only when
    ``max_wall_time`` seconds (since ``reset``) have passed. ``info`` every step: ``epoch``, ``prune_ratio``,
    ``action`` (decoded), ``kept_fraction`` (realised), ``planned_fraction``, ``compute_fraction_step``,
    ``compute_fraction_total``, ``flops_step``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``; at the end also ``test_loss``, ``test_accuracy``, ``episode_return`` and
    ``episode_record`` (for :func:`prunegym.envs.replay`; with the library ``versions`` it was made with). ``wall_time`` (seconds of training in the step)
    and ``wall_time_total`` (since ``reset``) only with ``record_wall_time=True``: everything else in
    ``info`` is a deterministic function of the seed and the actions.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(
        self,
        task: str = "synthetic-mlp",
        pruner: str = "full",
        pruner_kwargs: dict | None = None,
        reward: str | Callable[[RewardInput], float] = "tradeoff",
        compute_weight: float = DEFAULT_COMPUTE_WEIGHT,
        max_prune_ratio: float = 0.9,
        decision_interval: int = 1,
        record_wall_time: bool = False,
        max_wall_time: float | None = None,
        lossless_penalty: float = 10.0,
        lossless_tolerance: float = 0.005,
        nonfinite_penalty: float = NONFINITE_PENALTY,
        seed: int | None = None,
        render_mode: str | None = None,
        **run_overrides: Any,
    ):
        super().__init__()
        bad = sorted(set(run_overrides) - set(_RUN_FIELDS) - {"seed"})
        if bad:
            allowed = sorted(set(_RUN_FIELDS) - {"seed"}) + [
                "pruner", "pruner_kwargs", "reward", "compute_weight", "max_prune_ratio", "decision_interval",
                "record_wall_time", "max_wall_time", "lossless_penalty", "lossless_tolerance",
                "nonfinite_penalty", "seed", "render_mode"]
            raise ValueError(f"unknown PruningEnv argument(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}; allowed: None, 'ansi', 'rgb_array'")
        if not 0.0 <= max_prune_ratio < 1.0:
            raise ValueError(f"max_prune_ratio={max_prune_ratio!r} must be in [0, 1)")
        if not isinstance(decision_interval, int) or isinstance(decision_interval, bool) or decision_interval < 1:
            raise ValueError(f"decision_interval={decision_interval!r} must be a positive int")
        if isinstance(reward, str):
            if reward not in REWARDS:
                raise ValueError(f"unknown reward {reward!r}; allowed: {', '.join(REWARDS)} or a callable")
        elif not callable(reward):
            raise ValueError(f"reward={reward!r} must be one of {', '.join(REWARDS)} or a callable on RewardInput")
        for name, value in (("compute_weight", compute_weight), ("nonfinite_penalty", nonfinite_penalty),
                            ("lossless_penalty", lossless_penalty), ("lossless_tolerance", lossless_tolerance)):
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        if max_wall_time is not None and not (isinstance(max_wall_time, numbers.Real) and max_wall_time >= 0):
            raise ValueError(f"max_wall_time={max_wall_time!r} must be None or a number of seconds >= 0")
        if pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {pruner!r}; allowed: {', '.join(PRUNERS)}")
        self.task = task
        self.base_config = task_config(task).replace(**run_overrides)
        self.pruner_name = pruner
        self.pruner_kwargs = dict(pruner_kwargs or {})
        self.pruner: Pruner = make_pruner(pruner, **self.pruner_kwargs)
        self.reward_name = reward if isinstance(reward, str) else getattr(reward, "__name__", "callable")
        self._needs_reference = isinstance(reward, str) and reward == "lossless"
        if reward == "tradeoff":
            self.reward_fn = tradeoff_reward
        elif reward == "lossless":
            self.reward_fn = lossless_reward(lossless_penalty, lossless_tolerance)
        else:
            self.reward_fn = reward
        self.compute_weight = float(compute_weight)
        self.max_prune_ratio = float(max_prune_ratio)
        self.decision_interval = decision_interval
        self.record_wall_time = record_wall_time
        self.max_wall_time = max_wall_time
        self.nonfinite_penalty = float(nonfinite_penalty)
        self.render_mode = render_mode
        self._default_seed = None if seed is None else check_seed(seed)
        self._first_reset = True
        # Everything needed to rebuild this env (for episode records and replay); JSON-able unless
        # ``reward`` is a callable.
        self.env_kwargs = dict(
            task=task, pruner=pruner, pruner_kwargs=self.pruner_kwargs, reward=reward,
            compute_weight=self.compute_weight, max_prune_ratio=self.max_prune_ratio,
            decision_interval=decision_interval, lossless_penalty=lossless_penalty,
            lossless_tolerance=lossless_tolerance, nonfinite_penalty=self.nonfinite_penalty, **run_overrides,
        )
        self.knobs = self.pruner.knobs
        self.codec = ActionCodec(self.max_prune_ratio, self.knobs)
        self.action_space = spaces.Box(-1.0, 1.0, (1 + len(self.knobs),), np.float32)
        self.feature_names = FEATURE_NAMES
        self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (len(FEATURE_NAMES),), np.float32)
        self.epochs = self.base_config.epochs
        self.run: TrainingRun | None = None
        self._done = True
        self._last_info: dict = {}
        self._val_accuracies: list[float] = []
        self._kept_fractions: list[float] = []

    # -- actions -------------------------------------------------------------------------------------------
    @property
    def action_names(self) -> tuple[str, ...]:
        return self.codec.names

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
        if seed is not None:
            run_seed = int(seed)
        else:
            run_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.run_seed = run_seed
        self.run = TrainingRun(self.base_config.replace(seed=run_seed))
        run = self.run
        self.pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
        val = run.evaluate("val")
        self._initial_val_accuracy = val.accuracy
        self._stats = StepStats(val_loss=val.loss, val_accuracy=val.accuracy, prev_val_loss=val.loss,
                                prev_val_accuracy=val.accuracy)
        self._actions: list[list[float]] = []
        self._prune_ratios: list[float] = []
        self._kept_fractions = []
        self._val_accuracies = []
        self._return = 0.0
        self._start = time.perf_counter()
        self._done = False
        info = {"epoch": 0, "val_loss": val.loss, "val_accuracy": val.accuracy, "seed": run_seed}
        self._last_info = info
        return observe(run, self._stats), dict(info)

    def step(self, action):
        if self.run is None or self._done:
            raise RuntimeError("call reset() before step() (the episode is over or has not started)")
        a = self._check_action(action)
        decoded = self.codec.decode(a)
        run = self.run
        n_epochs = min(self.decision_interval, run.epochs - run.epoch)
        flops = 0.0
        trained = 0
        wall = 0.0
        error = None
        results = []
        for _ in range(n_epochs):
            plan = self.pruner.plan(run.epoch, run.scores, decoded)
            res = run.run_epoch(plan)
            self.pruner.update(res, run.scores)
            results.append(res)
            flops += res.flops
            trained += res.indices.numel()
            wall += res.wall_time
            if not math.isfinite(res.train_loss) and res.indices.numel() > 0:
                error = f"non-finite training loss ({res.train_loss}) at epoch {res.epoch}"
                break
        last = results[-1]
        val = run.evaluate("val")
        if error is None and not math.isfinite(val.loss):
            error = f"non-finite validation loss ({val.loss}) after epoch {last.epoch}"
        st = self._stats
        st.prev_val_loss, st.prev_val_accuracy = st.val_loss, st.val_accuracy
        st.val_loss, st.val_accuracy = val.loss, val.accuracy
        st.record_val(run.epoch)
        st.kept_fraction = trained / (run.num_train * len(results))
        st.train_loss = last.train_loss if last.indices.numel() else st.train_loss
        st.last_trained = last.indices
        terminated = run.done or error is not None
        frac_step = flops / run.meter.full_run_flops
        info: dict[str, Any] = {
            "epoch": run.epoch,
            "prune_ratio": decoded["prune_ratio"],
            "action": decoded,
            "kept_fraction": st.kept_fraction,
            "planned_fraction": sum(r.planned_fraction for r in results) / len(results),
            "compute_fraction_step": frac_step,
            "compute_fraction_total": run.meter.total_fraction,
            "flops_step": flops,
            "train_loss": last.train_loss,
            "train_accuracy": last.train_accuracy,
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "lr": last.lr,
        }
        ref = None
        if terminated and self._needs_reference:
            ref = reference_accuracy(run.config)
            info["reference_accuracy"] = ref
        # A diverged run is scored as a run ending here at zero accuracy, minus the penalty (NONFINITE_PENALTY).
        reward = float(self.reward_fn(RewardInput(
            val_accuracy=val.accuracy if error is None else 0.0, prev_val_accuracy=st.prev_val_accuracy,
            initial_val_accuracy=self._initial_val_accuracy, compute_fraction_step=frac_step,
            compute_fraction_total=run.meter.total_fraction, terminated=terminated,
            compute_weight=self.compute_weight, reference_accuracy=ref)))
        if error is not None:
            reward -= self.nonfinite_penalty
            info["error"] = error
        self._return += reward
        self._actions.append(a.tolist())  # validated and clipped, float64: replays bit-for-bit
        self._prune_ratios.append(decoded["prune_ratio"])
        self._kept_fractions.append(st.kept_fraction)
        self._val_accuracies.append(val.accuracy)
        elapsed = time.perf_counter() - self._start
        if self.record_wall_time:
            info["wall_time"] = wall
            info["wall_time_total"] = elapsed
        truncated = (not terminated and self.max_wall_time is not None and elapsed > self.max_wall_time)
        if terminated or truncated:
            test = run.evaluate("test")
            info["test_loss"] = test.loss
            info["test_accuracy"] = test.accuracy
            info["episode_return"] = self._return
            info["episode_record"] = {
                "task": self.task,
                "env_id": self.spec.id if self.spec is not None else None,
                "env_kwargs": self._record_kwargs(),
                "seed": self.run_seed,
                "actions": [list(x) for x in self._actions],
                "versions": versions(),  # replay warns when it runs under others
            }
            self._done = True
        self._last_info = info
        return observe(run, st), reward, terminated, truncated, info

    def _record_kwargs(self) -> dict:
        """A copy of ``env_kwargs`` the caller may mutate (a callable reward is shared, not copied)."""
        kwargs = copy.deepcopy({k: v for k, v in self.env_kwargs.items() if k != "reward"})
        kwargs["reward"] = self.env_kwargs["reward"]
        return kwargs

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
