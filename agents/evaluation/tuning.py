"""``tune``: a fixed policy's knobs tuned at a compute budget with Optuna (TPE), on tuning seeds (issue 16).

Each trial plays one episode per tuning seed (default :data:`TUNING_SEEDS`, disjoint from evaluation,
calibration and training seeds) in an env with ``compute_budget=budget`` and scores the mean final
*validation* accuracy (never the test set). The search space is the policy's ``tuned`` hyperparameters
(``static_const``: sharpness, rescale, greedy; ``static_schedule``: also tilt) or, for other policies, the
hyperparameters named like their pruner's knobs (log scale where the knob is), minus the main knob, which the
calibration solves for the budget first (:mod:`prunegym.agents.evaluation.calibration`, on the calibration seeds,
the same cached entry ``compare`` uses) and every trial keeps fixed; a policy that spends the budget itself
(``requires_budget``: the static ones) is not calibrated, and a budget the policy cannot reach is an error.

The study lives in an SQLite file (``<out>/<env>/<policy>/budget<b>.db``) that records what defines it (env
id, env kwargs, policy, budget, seeds, sampler seed, search space, fixed hyperparameters): a later ``tune``
with other settings, or a study that records none (made by an older prunegym), is refused rather than
continued. While a ``tune`` runs it holds the study's lock (``<out>/<env>/<policy>/.budget<b>.lock``,
:func:`~prunegym.agents.output.output_lock`): a second one on the same study fails at once naming its pid.
Trials left running by a killed process are marked failed when the study is opened; only complete trials
count. The k-th complete trial is drawn by a TPE sampler seeded from (``sampler_seed``, k), so an interrupted
tuning, resumed, continues exactly as an uninterrupted one would. The best settings are written to
``<out>/<env>/<policy>/budget<b>.json`` (with the episode count, the study's defining settings and the
command), where ``compare --tuned <out>`` picks them up. ``prunegym headroom`` runs its studies through the same
:func:`run_study`, one of them over several data regimes (its objective the mean over regimes and seeds).
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
from sqlalchemy.exc import SQLAlchemyError
from tqdm.auto import tqdm

from prunegym.baselines import POLICIES, PRUNERS
from prunegym.training import check_fraction, check_seed, derive_seed
from prunegym.training.io import canonical_json, to_jsonable, write_json_atomic

from ..env_factory import canonical_env_id
from ..output import output_lock
from .calibration import CALIBRATION_SEEDS, calibrate, main_knob
from .episode import policy_spec, run_episode

__all__ = ["SHIPPED_TUNED", "TUNING_SEEDS", "TuneResult", "load_tuned", "search_space", "tune", "tuned_path"]

TUNING_SEEDS = (30000, 30001)
SHIPPED_TUNED = Path(__file__).resolve().parent / "tuned"  # the settings prunegym's benchmarks tuned (issue 16)
FORMAT = "prunegym-tuned/1"
STUDY_FORMAT = "prunegym-study/1"  # the user attr ``format`` of a study that records its defining settings
_COMPLETE = optuna.trial.TrialState.COMPLETE


@dataclass
class TuneResult:
    """The best settings of a study: ``params`` (hyperparameters, ``fixed`` ones included) and ``value`` (mean
    final validation accuracy over ``seeds``, in [0, 1]), with ``n_trials`` complete trials = ``n_episodes``
    episodes; ``search_space`` is ``{name: [low, high, log]}`` (both empty in files written before them)."""

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
    fixed: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(env_id: str) -> str:
    return env_id.rpartition(":")[2].replace("/", "_")


def tuned_path(out: str | Path, env_id: str, policy: str, budget: float) -> Path:
    """Where ``tune`` writes (and ``compare`` reads) the best settings of (env, policy, budget)."""
    return Path(out) / _label(env_id) / policy / f"budget{float(budget):g}.json"


def load_tuned(out: str | Path | None, env_id: str, policy: str, budget: float) -> TuneResult | None:
    """The tuned settings of (env, policy, budget) under ``out``, or ``None`` if there are none (or ``out`` is
    None); a file that cannot be read as such is a one-line ``ValueError`` naming it."""
    if out is None:
        return None
    p = tuned_path(out, env_id, policy, budget)
    if not p.is_file():
        return None
    try:
        d = json.loads(p.read_text())
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format') if isinstance(d, dict) else None!r}, not {FORMAT!r}")
        result = TuneResult(**d)
        if not isinstance(result.params, dict) or not isinstance(result.env_kwargs, dict):
            raise ValueError("params or env_kwargs is not a mapping")
    except (OSError, TypeError, ValueError) as exc:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise ValueError(
            f"{str(p)!r} is not a readable prunegym tuning result ({why}); run `prunegym tune` again or remove the file"
        ) from None
    return result


def search_space(policy: str) -> dict[str, tuple[float, float, bool]]:
    """``{hyperparameter: (low, high, log)}`` that :func:`tune` searches for ``policy``: what its class
    declares (:meth:`~prunegym.baselines.FixedPolicy.search_space`), which must not be empty."""

    cls = POLICIES[policy]
    space = cls.search_space(PRUNERS[cls.pruner].knobs)
    if not space:
        raise ValueError(f"policy {policy!r} has nothing to tune besides its main knob")
    return space


def _fixed(
    env_id: str,
    policy: str,
    budget: float,
    env_kwargs: dict[str, Any],
    seeds: Sequence[int],
    progress: bool,
    runner: Callable[..., Any] | None,
) -> dict[str, Any]:
    """The main knob calibrated to ``budget`` (``{}`` for a policy that spends the budget itself); a budget it
    cannot reach is a ``ValueError``."""
    if POLICIES[policy].requires_budget:
        return {}
    cal = calibrate(env_id, policy, budget, env_kwargs=env_kwargs, seeds=seeds, progress=progress, runner=runner)
    if not cal.reachable:
        knob, cheapest = main_knob(policy)[:2]
        raise ValueError(
            f"{policy} cannot reach budget {budget:g}: its cheapest setting ({knob}={cheapest:g}) spends "
            f"{cal.compute:.3g} of the full run's compute on the calibration seeds; choose a larger --budget"
        )
    return cal.hparams


def _open_study(db: Path, name: str, attrs: dict[str, Any]) -> optuna.Study:
    """The study ``name`` in ``db`` (created with ``attrs`` as its user attrs if new), its RUNNING trials
    (left by a killed process: the caller holds the lock) marked FAIL; a study whose recorded attrs differ
    from ``attrs``, or that records none, is refused."""
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        if name not in {s.study_name for s in storage.get_all_studies()}:
            optuna.create_study(study_name=name, storage=storage, direction="maximize")
        study = optuna.load_study(study_name=name, storage=storage)
        stored, n = study.user_attrs, len(study.trials)
    except (SQLAlchemyError, RuntimeError) as exc:
        cause = getattr(exc, "orig", None) or exc  # SQLite's own error, without SQLAlchemy's statement
        why = f"{type(cause).__name__}: {' '.join(str(cause).split())}"[:300]
        raise ValueError(
            f"{str(db)!r} is not a readable Optuna study ({why}); use another --out or remove the file"
        ) from None
    if not stored and n:
        raise ValueError(
            f"study {str(db)!r} records no settings (made by an older prunegym), so its {n} trial(s) cannot be "
            "matched to this tuning; use another --out or remove the file"
        )
    if not stored:  # new (or created by a process killed before it recorded them)
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    differ = [
        f"{k} {canonical_json(stored.get(k))} -> {canonical_json(v)}"
        for k, v in attrs.items()
        if stored and canonical_json(stored.get(k)) != canonical_json(v)
    ]
    if differ:
        raise ValueError(
            f"study {str(db)!r} was made with other settings ({'; '.join(differ)}); use another --out or remove "
            "the file"
        )
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return study


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
    calibration_seeds: Sequence[int] = CALIBRATION_SEEDS,
    progress: bool = False,
    runner: Callable[..., Any] | None = None,
) -> TuneResult:
    """Run ``policy``'s study at ``budget`` (a fraction of the full run's compute) until it has ``trials``
    complete trials (see the module docstring). ``calibrated``: fixed hyperparameters added to every trial;
    ``None``: the main knob calibrated on ``calibration_seeds`` (none for a policy that spends the budget
    itself)."""

    bare = canonical_env_id(env_id)
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    budget = check_fraction(budget, "budget")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} must be a positive int")
    user_kwargs = dict(env_kwargs or {})
    if "compute_budget" in user_kwargs:
        raise ValueError("compute_budget is set by --budget; remove it from the env kwargs")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no tuning seeds")
    sampler_seed = check_seed(sampler_seed, "sampler_seed")
    budget = float(budget)
    search_space(policy)  # a policy with nothing to tune fails before any calibration
    fixed = dict(calibrated) if calibrated is not None else {}
    if calibrated is None:
        fixed = _fixed(bare, policy, budget, user_kwargs, calibration_seeds, progress, runner)
    desc = f"tune {policy} @ {budget:g}" if progress else None
    return run_study(env_id, policy, budget, trials, out, user_kwargs, seeds, sampler_seed, fixed, runner, desc)


def run_study(
    env_id: str,
    policy: str,
    budget: float,
    trials: int,
    out: str | Path,
    env_kwargs: dict[str, Any],
    seeds: list[int],
    sampler_seed: int,
    fixed: dict[str, Any] | None = None,
    runner: Callable[..., Any] | None = None,
    desc: str | None = None,
    *,
    instances: Sequence[dict[str, Any]] | None = None,
    command: str | None = None,
    holder: str = "prunegym tune",
) -> TuneResult:
    """Run the study of ``policy`` at ``budget`` under ``out`` (arguments already checked; see the module
    docstring) to ``trials`` complete trials and write its :class:`TuneResult` (shared by ``tune`` and
    ``headroom``). ``instances``: env kwargs added to ``env_kwargs`` in turn, the objective the mean over
    instances x seeds (recorded in the study's settings); ``None``: ``env_kwargs`` alone (``tune``'s study).
    ``desc``: the progress bar's name (None: no bar); ``command``: the one recorded (default ``tune``'s);
    ``holder``: the command named by the study's lock."""
    bare = canonical_env_id(env_id)
    space = search_space(policy)
    fixed = dict(fixed or {})
    result_path = tuned_path(out, bare, policy, budget)
    db = result_path.with_suffix(".db")
    attrs = {
        "format": STUDY_FORMAT,
        "env_id": bare,
        "env_kwargs": to_jsonable(env_kwargs),
        "policy": policy,
        "budget": budget,
        "seeds": seeds,
        "sampler_seed": sampler_seed,
        "search_space": {n: list(r) for n, r in space.items()},
        "fixed": to_jsonable(fixed),
    }
    if instances is not None:
        attrs["instances"] = to_jsonable([dict(i) for i in instances])
    kwargs = [{**env_kwargs, **i, "compute_budget": budget} for i in (instances if instances is not None else [{}])]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with output_lock(db.parent, command=holder, name=f".{db.stem}.lock"):
        study = _open_study(db, f"{_label(bare)}/{policy}/budget{budget:g}", attrs)
        objective = _objective(policy, fixed, space, seeds, bare, kwargs, runner or run_episode)
        _run_trials(study, objective, trials, sampler_seed, desc)
        result = _result(study, env_id, bare, policy, budget, trials, env_kwargs, seeds, sampler_seed, db, attrs)
        result.n_episodes *= len(kwargs)
        if command is not None:
            result.command = command + f"  # (python: {shlex.join(sys.argv)})"
        write_json_atomic(result_path, result.to_dict())
    return result


def _objective(
    policy: str,
    fixed: dict[str, Any],
    space: dict[str, tuple[float, float, bool]],
    seeds: list[int],
    env_id: str,
    env_kwargs: list[dict[str, Any]],
    run: Callable[..., Any],
) -> Callable[[optuna.Trial], float]:
    """A trial's score: the mean final validation accuracy (in [0, 1]) of ``policy`` with the ``fixed``
    hyperparameters and the trial's suggestions from ``space``, one episode per (env kwargs, seed) of
    ``env_kwargs`` x ``seeds`` (accuracies and compute fractions kept as the trial's user attrs, in that order)."""

    def objective(trial) -> float:
        params = {n: trial.suggest_float(n, lo, hi, log=log) for n, (lo, hi, log) in space.items()}
        spec = policy_spec(policy, hparams={**fixed, **params})
        accs, comps = [], []
        for kwargs, s in ((k, s) for k in env_kwargs for s in seeds):
            row = run(spec, env_id, kwargs, s).row
            accs.append(float(row.val_accuracy))
            comps.append(float(row.compute_fraction))
        trial.set_user_attr("val_accuracies", accs)
        trial.set_user_attr("compute_fractions", comps)
        return sum(accs) / len(accs)

    return objective


def _run_trials(
    study: optuna.Study, objective: Callable[[optuna.Trial], float], trials: int, sampler_seed: int, desc: str | None
) -> None:
    """Run ``study`` one trial at a time until it has ``trials`` complete ones, the k-th drawn by a TPE sampler
    seeded from (``sampler_seed``, k); a progress bar named ``desc`` unless that is None."""

    def done() -> int:
        return len(study.get_trials(deepcopy=False, states=(_COMPLETE,)))

    bar = None
    if desc is not None and done() < trials:
        bar = tqdm(total=trials, initial=done(), desc=desc, unit="trial")
    try:
        while (k := done()) < trials:  # the k-th complete trial's sampler: the same whenever it runs
            study.sampler = optuna.samplers.TPESampler(seed=derive_seed(sampler_seed, f"tune trial {k}") % 2**32)
            study.optimize(objective, n_trials=1, catch=())
            if bar is not None:
                bar.update()
                bar.set_postfix_str(f"best {study.best_value:.4f}")
    finally:
        if bar is not None:
            bar.close()


def _result(
    study: optuna.Study,
    env_id: str,
    bare: str,
    policy: str,
    budget: float,
    trials: int,
    env_kwargs: dict[str, Any],
    seeds: list[int],
    sampler_seed: int,
    db: Path,
    attrs: dict[str, Any],
) -> TuneResult:
    """The :class:`TuneResult` of ``study``'s complete trials, with the command that reproduces it."""
    complete = study.get_trials(deepcopy=False, states=(_COMPLETE,))
    best = study.best_trial
    assert best.value is not None  # best_trial is a complete trial of a single-objective study
    command = f"prunegym tune --env {env_id} --policy {policy} --budget {budget:g} --trials {trials}"
    if seeds != list(TUNING_SEEDS):
        command += " --seeds " + " ".join(map(str, seeds))
    if sampler_seed:
        command += f" --sampler-seed {sampler_seed}"
    if env_kwargs:
        command += " --env-kwargs " + " ".join(shlex.quote(f"{k}={v!r}") for k, v in sorted(env_kwargs.items()))
    return TuneResult(
        env_id=bare,
        env_kwargs=dict(env_kwargs),
        policy=policy,
        budget=budget,
        params={**attrs["fixed"], **best.params},
        value=float(best.value),
        n_trials=len(complete),
        n_episodes=len(complete) * len(seeds),
        seeds=seeds,
        sampler_seed=sampler_seed,
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
        fixed=dict(attrs["fixed"]),
        search_space=dict(attrs["search_space"]),
    )
