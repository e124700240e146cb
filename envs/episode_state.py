"""What one episode of the env remembers, and the bookkeeping of a step, written once for ``PruningEnv`` and
each sub-env of ``PruningVectorEnv``.

An env (single or vector) does what differs between them: it makes or resets the training run, trains the
step's epochs (:func:`~prunegym.training.step_run` or :func:`~prunegym.training.step_runs`, summed in an
:class:`Advance`) and evaluates. :class:`EpisodeState` does the rest: the step memory the observation reads
(:class:`~prunegym.envs.features.StepStats`), the reward object, the budget, the ``info`` of the step, the
termination rules, the return, the actions and the :class:`~prunegym.envs.record.EpisodeRecord`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prunegym.training import ComputeBudget, EpochResult, EvalResult, RunState, float_path, versions

from .features import DeviceStats, Feature, FeatureContext, StepStats, device_stats, observe
from .info import ResetInfo, StepInfo
from .instances import Instance
from .options import EnvOptions
from .record import EpisodeRecord
from .reference import reference_accuracy
from .rewards import Reward, RewardInput

__all__ = ["Advance", "EpisodeState", "check_action"]


@dataclass
class Advance:
    """What the epochs of one step did (host-side numbers; ``last`` is the last epoch's result)."""

    results: list[EpochResult] = field(default_factory=list)
    flops: float = 0.0
    trained: int = 0
    wall: float = 0.0
    trimmed: int = 0
    error: str | None = None

    @property
    def last(self) -> EpochResult:
        return self.results[-1]

    def add(self, res: EpochResult) -> bool:
        """Add one epoch's result; True when the step must stop (a non-finite training loss: ``error``)."""
        self.results.append(res)
        self.flops += res.flops
        self.trained += int(res.indices.numel())
        self.wall += res.wall_time
        self.trimmed += int(res.extra.get("budget_trimmed", 0))
        if not math.isfinite(res.train_loss) and res.indices.numel() > 0:
            self.error = f"non-finite training loss ({res.train_loss}) at epoch {res.epoch}"
            return True
        return False


def check_action(action: Any, shape: tuple[int, ...], names: Sequence[str]) -> np.ndarray:
    """``action`` as a float64 vector of ``shape``, clipped to [-1, 1]; a wrong shape or NaN/inf raises
    ``ValueError`` naming the expected shape and components."""
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"action {action!r} is not numeric; expected shape {shape} with values in [-1, 1] ({', '.join(names)})"
        ) from exc
    if a.ndim == 0 and shape == (1,):
        a = a.reshape(1)
    if a.shape != shape:
        raise ValueError(f"action has shape {a.shape}; expected {shape} with values in [-1, 1] ({', '.join(names)})")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action {a.tolist()} has NaN or inf; expected finite values in [-1, 1] of shape {shape}")
    return np.clip(a, -1.0, 1.0)


class EpisodeState:
    """One episode: ``run`` (a ``TrainingRun`` or a ``RunView`` of a batch) with run seed ``seed``, its
    ``instance`` (compute budget, ``None``: none, and data regime: :mod:`prunegym.envs.instances`), the env's
    ``reward`` object (reset here with the initial validation accuracy ``val``) and the step memory ``stats``;
    ``options`` are the env's :class:`EnvOptions`."""

    def __init__(
        self,
        run: RunState,
        seed: int,
        instance: Instance,
        reward: Reward,
        val: EvalResult,
        options: EnvOptions,
    ):
        compute_budget = instance.compute_budget
        self.run, self.seed, self.compute_budget, self.instance = run, int(seed), compute_budget, instance
        self.regime = run.data.regime if options.regime_ranges() else None  # the diagnostics' source
        self.budget = ComputeBudget(compute_budget) if compute_budget is not None else None
        self.reward, self.options = reward, options
        self.initial_val_accuracy = val.accuracy
        reward.reset(val.accuracy)
        self.stats = StepStats(
            val_loss=val.loss, val_accuracy=val.accuracy, prev_val_loss=val.loss, prev_val_accuracy=val.accuracy
        )
        self.actions: list[list[float]] = []
        self.kept_fractions: list[float] = []
        self.val_accuracies: list[float] = []
        self.episode_return = 0.0
        self.start = time.perf_counter()
        self.done = False
        reset = ResetInfo(
            epoch=0, val_loss=val.loss, val_accuracy=val.accuracy, seed=self.seed, compute_budget=compute_budget
        )
        if self.regime is not None:
            c = run.config
            reset.instance = {
                "label_noise": c.label_noise,
                "label_noise_kind": c.label_noise_kind,
                "clean_val": c.clean_val,
                "imbalance": c.imbalance,
                "compute_budget": compute_budget,
                "epochs": run.epochs,
            }
            reset.noisy_fraction = self.noisy_fraction = self.regime.noisy_fraction()
        self.reset_info = reset.to_dict()

    @property
    def epochs_this_step(self) -> int:
        """Epochs the next step trains: ``decision_interval``, fewer at the end of the run."""
        return min(self.options.decision_interval, self.run.epochs - self.run.epoch)

    def flops_left(self) -> float | None:
        """FLOPs left in the budget (``None`` without one)."""
        return self.budget.flops_left(self.run.meter) if self.budget is not None else None

    def observe(self, features: Sequence[Feature], dev: DeviceStats | None = None) -> np.ndarray:
        """The observation; ``dev``: the run's device statistics if already computed (else one host sync)."""
        run = self.run
        ctx = FeatureContext(run, self.stats, dev if dev is not None else device_stats(run, self.stats), self.budget)
        return observe(ctx, features)

    def conclude(
        self, action: np.ndarray, decision: dict[str, float], adv: Advance, val: EvalResult
    ) -> tuple[float, bool, bool, StepInfo]:
        """The step after its epochs were trained (``adv``) and the run evaluated (``val``): updates the step
        memory, the return and the actions; returns ``(reward, terminated, truncated, info)``. At the end of
        the episode, call :meth:`finish` with the test metrics."""
        error = adv.error
        if error is None and not math.isfinite(val.loss):
            error = f"non-finite validation loss ({val.loss}) after epoch {adv.last.epoch}"
        self._remember(val, adv)
        terminated = self.run.done or error is not None
        info = self._step_info(decision, adv, val, error)
        reward = self._reward(val, terminated, error, info)
        self.episode_return += reward
        self.actions.append(action.tolist())  # validated and clipped, float64: replays bit-for-bit
        self.kept_fractions.append(self.stats.kept_fraction)
        self.val_accuracies.append(val.accuracy)
        elapsed = time.perf_counter() - self.start
        if self.options.record_wall_time:
            info.wall_time, info.wall_time_total = adv.wall, elapsed
        limit = self.options.max_wall_time
        truncated = not terminated and limit is not None and elapsed > limit
        return reward, terminated, truncated, info

    def _remember(self, val: EvalResult, adv: Advance) -> None:
        """Update the step memory the observation reads."""
        st, run = self.stats, self.run
        st.prev_val_loss, st.prev_val_accuracy = st.val_loss, st.val_accuracy
        st.val_loss, st.val_accuracy = val.loss, val.accuracy
        st.record_val(run.epoch)
        st.kept_fraction = adv.trained / (run.num_train * len(adv.results))
        st.train_loss = adv.last.train_loss if adv.last.indices.numel() else st.train_loss
        st.last_trained = adv.last.indices

    def _step_info(self, decision: dict[str, float], adv: Advance, val: EvalResult, error: str | None) -> StepInfo:
        run = self.run
        last = adv.last
        info = StepInfo(
            epoch=run.epoch,
            prune_ratio=decision["prune_ratio"],
            claimed_prune_ratio=sum(r.claimed_prune_ratio for r in adv.results) / len(adv.results),
            action=decision,
            kept_fraction=self.stats.kept_fraction,
            planned_fraction=sum(r.planned_fraction for r in adv.results) / len(adv.results),
            compute_fraction_step=adv.flops / run.meter.full_run_flops,
            compute_fraction_total=run.meter.total_fraction,
            selector_compute_fraction_step=sum(r.passes.selector_flops for r in adv.results) / run.meter.full_run_flops,
            selector_compute_fraction_total=run.meter.total_passes.selector_flops / run.meter.full_run_flops,
            flops_step=adv.flops,
            train_loss=last.train_loss,
            train_accuracy=last.train_accuracy,
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            lr=last.lr,
            error=error,
        )
        if self.budget is not None:
            info.compute_budget = self.budget.fraction
            info.budget_left, info.budget_trimmed = self.budget.share_left(run.meter), adv.trimmed
        if self.regime is not None:
            info.noisy_fraction = self.noisy_fraction
            shares = self.regime.kept_shares([r.indices for r in adv.results])
            info.kept_noisy_fraction, info.kept_head_fraction, info.kept_tail_fraction = shares
        return info

    def _reward(self, val: EvalResult, terminated: bool, error: str | None, info: StepInfo) -> float:
        ref = None
        if terminated and self.reward.needs_reference:
            ref = info.reference_accuracy = reference_accuracy(self.run.config)
        r = RewardInput(
            val_accuracy=val.accuracy,
            prev_val_accuracy=self.stats.prev_val_accuracy,
            initial_val_accuracy=self.initial_val_accuracy,
            compute_fraction_step=info.compute_fraction_step,
            compute_fraction_total=info.compute_fraction_total,
            terminated=terminated,
            compute_weight=float(self.options.reward_setting("compute_weight")),
            reference_accuracy=ref,
            compute_budget=self.compute_budget,
        )
        return float(self.reward.on_error(r) if error is not None else self.reward.step(r))

    def finish(
        self, info: StepInfo, test: EvalResult, env_kwargs: dict, task: str, env_id: str | None, record_budget: bool
    ) -> None:
        """End of the episode: test metrics, the return and the episode record (``env_kwargs``: the env's
        rebuild arguments, a copy the caller will not mutate; ``record_budget``: the env has a budget)."""
        info.test_loss, info.test_accuracy, info.episode_return = test.loss, test.accuracy, self.episode_return
        info.episode_record = EpisodeRecord(
            env_kwargs=env_kwargs,
            seed=self.seed,
            actions=[list(x) for x in self.actions],
            task=task,
            env_id=env_id,
            compute_budget=self.compute_budget if record_budget else None,
            versions={**versions(), "float_path": float_path()},
            regime=self.instance.regime(),
        ).to_dict()  # replay warns when it runs under other versions
        self.done = True
