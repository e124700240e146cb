"""``tune``: a fixed policy's knobs tuned at a compute budget with Optuna (TPE), on tuning seeds (issue 16).

Each trial plays one episode per tuning seed (default :data:`TUNING_SEEDS`, disjoint from evaluation,
calibration and training seeds) in an env with ``compute_budget=budget`` and scores the mean final
*validation* accuracy (never the test set). The search space is the policy's ``tuned`` hyperparameters
(``static_const``: sharpness, rescale, greedy; ``static_schedule``: also tilt) or, for other policies, the
hyperparameters named like their pruner's knobs (log scale where the knob is), minus the main knob, which the
calibration solves for the budget (:mod:`prunegym.agents.evaluation.calibration`). The sampler is TPE seeded with
``sampler_seed``; the study lives in an SQLite file (``<out>/<env>/<policy>/budget<b>.db``), so an
interrupted tuning resumes where it stopped (a resumed sampler draws from a fresh seeded generator: the
trials that follow differ from an uninterrupted run's, the finished ones are kept). The best settings are
written to ``<out>/<env>/<policy>/budget<b>.json`` (with the episode count and the command), where
``compare --tuned <out>`` picks them up.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from tqdm.auto import tqdm

from prunegym.baselines import POLICIES, PRUNERS
from prunegym.training.io import write_json_atomic

from .calibration import main_knob
from .episode import policy_spec, run_episode

__all__ = ["SHIPPED_TUNED", "TUNING_SEEDS", "TuneResult", "load_tuned", "search_space", "tune", "tuned_path"]

TUNING_SEEDS = (30000, 30001)
SHIPPED_TUNED = Path(__file__).resolve().parent / "tuned"  # the settings prunegym's benchmarks tuned (issue 16)
FORMAT = "prunegym-tuned/1"


@dataclass
class TuneResult:
    """The best settings of a study: ``params`` (hyperparameters) and ``value`` (mean final validation
    accuracy over ``seeds``), with ``n_trials`` finished trials = ``n_episodes`` episodes."""

    env_id: str
    env_kwargs: dict[str, Any]
    policy: str
    budget: float
    params: dict[str, Any]
    value: float
    n_trials: int
    n_episodes: int
    seeds: list[int]
    sampler_seed: int
    storage: str
    command: str
    format: str = FORMAT
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(env_id: str) -> str:
    return env_id.rpartition(":")[2].replace("/", "_")


def tuned_path(out: str | Path, env_id: str, policy: str, budget: float) -> Path:
    """Where ``tune`` writes (and ``compare`` reads) the best settings of (env, policy, budget)."""
    return Path(out) / _label(env_id) / policy / f"budget{float(budget):g}.json"


def load_tuned(out: str | Path | None, env_id: str, policy: str, budget: float) -> TuneResult | None:
    """The tuned settings of (env, policy, budget) under ``out``, or ``None`` if there are none (or ``out`` is
    None)."""
    if out is None:
        return None
    p = tuned_path(out, env_id, policy, budget)
    if not p.is_file():
        return None
    d = json.loads(p.read_text())
    if d.get("format") != FORMAT:
        raise ValueError(f"{str(p)!r} is not a prunegym tuning result (format {d.get('format')!r})")
    return TuneResult(**d)


def search_space(policy: str) -> dict[str, tuple[float, float, bool]]:
    """``{hyperparameter: (low, high, log)}`` that :func:`tune` searches for ``policy``."""

    cls = POLICIES[policy]
    knobs = {k.name: k for k in PRUNERS[cls.pruner].knobs}
    names = getattr(cls, "tuned", None)
    if names is None:
        names = tuple(n for n in cls.defaults if n in knobs and n != main_knob(policy)[0])
    space: dict[str, tuple[float, float, bool]] = {}
    for n in names:
        if n in knobs:
            k = knobs[n]
            space[n] = (float(k.low), float(k.high), bool(getattr(k, "log", False)))
        elif n == "tilt":
            space[n] = (-1.0, 1.0, False)
        else:
            raise ValueError(f"policy {policy!r}: no range known for tuned hyperparameter {n!r}")
    if not space:
        raise ValueError(f"policy {policy!r} has nothing to tune besides its main knob")
    return space


def tune(
    env_id: str,
    policy: str,
    budget: float,
    trials: int,
    *,
    out: str | Path = "tuned",
    env_kwargs: dict[str, Any] | None = None,
    seeds: Sequence[int] = TUNING_SEEDS,
    sampler_seed: int = 0,
    calibrated: dict[str, Any] | None = None,
    progress: bool = False,
    runner: Callable[..., Any] | None = None,
) -> TuneResult:
    """Run ``policy``'s study at ``budget`` until it has ``trials`` finished trials (see the module
    docstring); ``calibrated`` are fixed hyperparameters (the calibrated main knob) added to every trial."""

    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    if not 0.0 < float(budget) <= 1.0:
        raise ValueError(f"budget={budget!r} must be a fraction in (0, 1]")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} must be a positive int")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no tuning seeds")
    space = search_space(policy)
    kwargs = {**dict(env_kwargs or {}), "compute_budget": float(budget)}
    run = runner or run_episode
    result_path = tuned_path(out, env_id, policy, budget)
    db = result_path.with_suffix(".db")
    db.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{db.resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{_label(env_id)}/{policy}/budget{float(budget):g}",
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
    )
    fixed = dict(calibrated or {})

    def objective(trial) -> float:
        params = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in space.items()}
        spec = policy_spec(policy, hparams={**fixed, **params})
        accs, comps = [], []
        for s in seeds:
            row = run(spec, env_id, kwargs, s).row
            accs.append(float(row.val_accuracy))
            comps.append(float(row.compute_fraction))
        trial.set_user_attr("val_accuracies", accs)
        trial.set_user_attr("compute_fractions", comps)
        return sum(accs) / len(accs)

    def done() -> int:
        return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    todo = trials - done()
    bar = None
    if progress and todo > 0:
        bar = tqdm(total=trials, initial=done(), desc=f"tune {policy} @ {budget:g}", unit="trial")
    try:
        while done() < trials:
            study.optimize(objective, n_trials=1, catch=())
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"best {study.best_value:.4f}")
    finally:
        if bar is not None:
            bar.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    assert best.value is not None  # best_trial is a complete trial of a single-objective study
    command = f"prunegym tune --env {env_id} --policy {policy} --budget {float(budget):g} --trials {trials}"
    if env_kwargs:
        command += " --env-kwargs " + " ".join(shlex.quote(f"{k}={v!r}") for k, v in sorted(env_kwargs.items()))
    result = TuneResult(
        env_id=env_id,
        env_kwargs=dict(env_kwargs or {}),
        policy=policy,
        budget=float(budget),
        params={**fixed, **best.params},
        value=float(best.value),
        n_trials=len(complete),
        n_episodes=len(complete) * len(seeds),
        seeds=seeds,
        sampler_seed=int(sampler_seed),
        storage=str(db),
        command=command + f"  # (python: {shlex.join(sys.argv)})",
        history=[
            {
                "number": t.number,
                "params": t.params,
                "value": t.value,
                "compute_fractions": t.user_attrs.get("compute_fractions"),
            }
            for t in complete
        ],
    )
    write_json_atomic(result_path, result.to_dict())
    return result
