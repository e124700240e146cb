"""Calibration: solve a fixed policy's main knob so that its realised compute meets a budget (issue 16).

For a (task, policy, budget ``b``), :func:`calibrate` finds the value of the policy's main knob (its prune
ratio; IES's threshold, on a log scale) at which the mean realised compute fraction over the calibration
seeds is ``b`` within ``tol`` (relative, default 1%): bisection on a bracket, each step placed by
regula falsi (the Illinois variant) and falling back to the midpoint, so a knob whose compute is an exact
function of it lands in two or three steps and a noisy one still converges. Episodes run without the env's
budget cap (the cap would hide an overshoot). A policy whose cheapest setting still spends more than
``b (1 + tol)`` cannot reach the budget and is reported as such (``reachable=False``, with the cheapest
compute it got), never forced.

Results are cached as JSON per (env id, env kwargs, policy, budget, seeds, tolerance, prunegym version, float
path) under ``<cache>/calibration/`` with the command that made them. An entry is found by a hash of those
fields, and used only if each of them, as stored in it, matches the request: a mismatching one is computed
again, a corrupt one too, with a one-line warning naming the file. A cache folder that cannot be written is
warned about once (``RuntimeWarning``); the calibration is returned uncached. The env kwargs that do not change
a fixed policy's compute (:data:`NOT_IN_CALIBRATION`) are left out of both the key and the episodes. The
calibrations of prunegym's own benchmarks ship with the package (:data:`SHIPPED_CALIBRATIONS`) and are found,
and checked, the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from prunegym.baselines import POLICIES, PRUNERS
from prunegym.envs.reference import cache_dir
from prunegym.training import check_fraction, float_path, versions
from prunegym.training.io import canonical_json, write_json_atomic

from ..env_factory import unbudgeted_kwargs
from .episode import policy_spec, run_episode

__all__ = [
    "CALIBRATION_SEEDS",
    "NOT_IN_CALIBRATION",
    "SHIPPED_CALIBRATIONS",
    "Calibration",
    "calibrate",
    "calibration_cache",
    "calibration_kwargs",
    "main_knob",
]

CALIBRATION_SEEDS = (20000, 20001)  # disjoint from evaluation (< 10000), tuning (30000+) and training (>= 1e6)
_COMPUTED: dict[str, float] = {}  # (env, kwargs, policy, knob value, seeds) -> mean compute, for this process
SHIPPED_CALIBRATIONS = Path(__file__).resolve().parent / "calibrated"  # made by prunegym's benchmarks
FORMAT = "prunegym-calibration/2"  # /2: keyed and checked by prunegym version and float path too
# env kwargs that do not change a fixed policy's compute (the reward and its parameters, the budget)
NOT_IN_CALIBRATION = ("compute_budget", "reward", "compute_weight", "reward_kwargs")
_WARNED: set[str] = set()  # cache folders already warned about


@dataclass
class Calibration:
    """The solved main knob of ``policy`` at ``budget`` (``value``; ``None`` if unreachable), the mean
    compute it realised on ``seeds`` (``compute``, a fraction of the full run's), every evaluated point
    ``(knob, compute)``, the command that made it, and the prunegym ``version`` and ``float_path`` it ran
    under (empty in entries written before they were recorded)."""

    env_id: str
    env_kwargs: dict[str, Any]
    policy: str
    budget: float
    knob: str
    value: float | None
    compute: float
    reachable: bool
    seeds: list[int]
    tol: float
    points: list[list[float]] = field(default_factory=list)
    command: str = ""
    format: str = FORMAT
    version: str = ""
    float_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hparams(self) -> dict[str, Any]:
        """The policy hyperparameters that reach the budget (``{}`` if unreachable)."""
        return {self.knob: self.value} if self.reachable and self.value is not None else {}


def main_knob(policy: str) -> tuple[str, float, float, bool]:
    """``(name, cheapest, dearest, log_scale)`` of ``policy``'s main knob: the value that saves most compute,
    the one that saves none, and whether to bisect on a log scale: what its class declares
    (:meth:`~prunegym.baselines.FixedPolicy.calibration_knob`)."""

    cls = POLICIES[policy]
    return cls.calibration_knob(PRUNERS[cls.pruner].knobs)


def calibration_cache() -> Path:
    """``$PRUNEGYM_CACHE/calibration`` (default ``~/.cache/prunegym/calibration``)."""

    return cache_dir() / "calibration"


def calibration_kwargs(env_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``env_kwargs`` without :data:`NOT_IN_CALIBRATION`: what a calibration is keyed by and runs with."""
    return {k: v for k, v in dict(env_kwargs or {}).items() if k not in NOT_IN_CALIBRATION}


def _request(
    env_id: str, env_kwargs: dict[str, Any], policy: str, budget: float, seeds: Sequence[int], tol: float
) -> dict[str, Any]:
    """The fields that define a calibration (its cache key, and what a found entry must match)."""
    return {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "policy": policy,
        "budget": budget,
        "seeds": [int(s) for s in seeds],
        "tol": tol,
        "version": str(versions()["prunegym"]),
        "float_path": float_path(),
        "format": FORMAT,
    }


def _key(request: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()[:20]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _load(path: Path, request: dict[str, Any], knob: str, warn: bool) -> Calibration | None:
    """The entry at ``path`` if every defining field in it matches ``request``, else ``None``; a corrupt one
    is warned about in one line when ``warn`` (the user's cache; a shipped one is skipped quietly)."""
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
        cal = Calibration(**entry)
        value_ok = cal.value is None or (isinstance(cal.value, (int, float)) and math.isfinite(cal.value))
        if not (value_ok and isinstance(cal.compute, (int, float)) and isinstance(cal.reachable, bool)):
            raise ValueError("value, compute or reachable of the wrong type")
    except (OSError, TypeError, ValueError) as exc:
        if warn:
            warnings.warn(
                f"calibration cache entry {str(path)!r} is corrupt ({_one_line(exc)}); computing it again",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    stored = {k: entry.get(k) for k in request}
    return cal if canonical_json(stored) == canonical_json(request) and cal.knob == knob else None


def _store(path: Path, cal: Calibration) -> None:
    """Write ``cal`` to ``path``, best effort: a folder that cannot be written is warned about once."""
    try:
        write_json_atomic(path, cal.to_dict())
    except OSError as exc:
        folder = str(path.parent)
        if folder not in _WARNED:
            _WARNED.add(folder)
            warnings.warn(
                f"calibration cache {folder!r} cannot be written ({type(exc).__name__}: {exc.strerror or exc}); "
                "the calibration is not cached (set PRUNEGYM_CACHE to a writable folder)",
                RuntimeWarning,
                stacklevel=3,
            )


def _command(env_id: str, policy: str, budget: float, env_kwargs: dict[str, Any]) -> str:
    kv = " ".join(f"{k}={v!r}" for k, v in sorted(env_kwargs.items()))
    return (
        f"prunegym compare --env {env_id} --budgets {budget:g} --policies {policy}"
        + (f" --env-kwargs {shlex.quote(kv)}" if kv else "")
        + f"  # (python: {shlex.join(sys.argv)})"
    )


def calibrate(
    env_id: str,
    policy: str,
    budget: float,
    *,
    env_kwargs: dict[str, Any] | None = None,
    seeds: Sequence[int] = CALIBRATION_SEEDS,
    tol: float = 0.01,
    max_steps: int = 14,
    cache: str | Path | None = None,
    progress: bool = False,
    runner: Callable[..., Any] | None = None,
) -> Calibration:
    """Solve ``policy``'s main knob for ``budget`` (a fraction of the full run's compute) on ``env_id`` (see
    the module docstring); ``env_kwargs`` of :data:`NOT_IN_CALIBRATION` are ignored."""

    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; allowed: {', '.join(POLICIES)}")
    budget = check_fraction(budget, "budget")
    env_kwargs = calibration_kwargs(env_kwargs)
    knob, cheap, dear, log = main_knob(policy)
    folder = Path(cache) if cache is not None else calibration_cache()
    request = _request(env_id, env_kwargs, policy, float(budget), seeds, tol)
    name = f"{_key(request)}.json"
    path = folder / name
    for known, warn in ((path, True), (SHIPPED_CALIBRATIONS / name, False)):  # this machine's, then shipped
        found = _load(known, request, knob, warn)
        if found is not None:
            return found
    points: list[list[float]] = []
    bar = None
    if progress:
        bar = tqdm(total=max_steps + 2, desc=f"calibrate {policy} @ {budget:g}", unit="step", leave=False)
    compute_at = _compute_at(env_id, env_kwargs, policy, knob, seeds, runner, points, bar)
    b = float(budget)
    try:
        value, comp, ok = _solve_knob(compute_at, b, tol, cheap, dear, log, max_steps)
    finally:
        if bar is not None:
            bar.close()
    cal = Calibration(
        env_id=env_id,
        env_kwargs=env_kwargs,
        policy=policy,
        budget=b,
        knob=knob,
        value=None if value is None else round(float(value), 10),
        compute=comp,
        reachable=ok,
        seeds=[int(s) for s in seeds],
        tol=tol,
        points=points,
        command=_command(env_id, policy, b, env_kwargs),
        version=request["version"],
        float_path=request["float_path"],
    )
    _store(path, cal)
    return cal


def _compute_at(
    env_id: str,
    env_kwargs: dict[str, Any],
    policy: str,
    knob: str,
    seeds: Sequence[int],
    runner: Callable[..., Any] | None,
    points: list[list[float]],
    bar: Any,
) -> Callable[[float], float]:
    """``value -> mean compute fraction`` of ``policy`` with ``knob=value`` over ``seeds`` (remembered in
    :data:`_COMPUTED` unless ``runner`` is custom); each point is appended to ``points`` and counted on ``bar``."""
    run = runner or run_episode
    run_kwargs = unbudgeted_kwargs(env_id, env_kwargs)  # the knob's natural compute: no budget cap

    def compute_at(value: float) -> float:
        memo = canonical_json([env_id, env_kwargs, policy, knob, value, list(seeds)])
        if memo in _COMPUTED and runner is None:  # the same point of another budget's bisection
            c = _COMPUTED[memo]
        else:
            spec = policy_spec(policy, hparams={knob: value})
            comps = [float(run(spec, env_id, run_kwargs, int(s)).row.compute_fraction) for s in seeds]
            c = sum(comps) / len(comps)
            if runner is None:  # a custom runner's points are its own, not this process's episodes
                _COMPUTED[memo] = c
        points.append([value, c])
        if bar is not None:
            bar.update()
        return c

    return compute_at


def _solve_knob(
    compute_at: Callable[[float], float], b: float, tol: float, cheap: float, dear: float, log: bool, max_steps: int
) -> tuple[float | None, float, bool]:
    """``(knob value, compute, reachable)`` for budget ``b``: the cheapest setting if it already meets the budget
    or overshoots it (unreachable, value ``None``), the dearest if it spends less, else :func:`_solve` between
    them (on a log scale with ``log``)."""

    def to_x(v: float) -> float:
        return math.log(v) if log else v

    def from_x(x: float) -> float:
        return math.exp(x) if log else x

    c_cheap = compute_at(cheap)
    if c_cheap > b * (1.0 + tol):
        return None, c_cheap, False
    if abs(c_cheap / b - 1.0) <= tol:
        return cheap, c_cheap, True
    c_dear = compute_at(dear)
    if c_dear < b * (1.0 - tol):  # spends less than the budget even at its dearest setting
        return dear, c_dear, True
    x, c, ok = _solve(lambda x: compute_at(from_x(x)), b, tol, (to_x(cheap), c_cheap), (to_x(dear), c_dear), max_steps)
    return from_x(x), c, ok


def _solve(
    f: Callable[[float], float],
    b: float,
    tol: float,
    low: tuple[float, float],
    high: tuple[float, float],
    max_steps: int,
) -> tuple[float, float, bool]:
    """``(x, f(x), ok)`` with ``|f(x) / b - 1| <= tol`` (``ok``), else the closest point seen, by the Illinois
    regula falsi between ``low = (x, f(x) < b)`` and ``high = (x, f(x) > b)``, falling back to the midpoint
    when the secant step leaves the bracket."""
    (x_lo, c_lo), (x_hi, c_hi) = low, high
    g_lo, g_hi = c_lo - b, c_hi - b  # < 0, > 0
    best = min((low, high), key=lambda p: abs(p[1] - b))
    last = 0  # which end the previous step replaced: -1 low, +1 high
    for _ in range(max_steps):
        x = x_hi - g_hi * (x_hi - x_lo) / (g_hi - g_lo) if g_hi != g_lo else 0.5 * (x_lo + x_hi)
        if not min(x_lo, x_hi) < x < max(x_lo, x_hi):
            x = 0.5 * (x_lo + x_hi)
        c = f(x)
        if abs(c - b) < abs(best[1] - b):
            best = (x, c)
        if abs(c / b - 1.0) <= tol:
            return x, c, True
        if c < b:
            x_lo, g_lo = x, c - b
            if last == -1:
                g_hi *= 0.5  # Illinois: the retained end's value is halved
            last = -1
        else:
            x_hi, g_hi = x, c - b
            if last == 1:
                g_lo *= 0.5
            last = 1
    return best[0], best[1], False
