"""The ``prunegym headroom`` subcommand's arguments and its ``--instances`` reader. :mod:`prunegym.agents.cli_parser`
registers the parser (passing its shared argument helpers, so that this module imports nothing of it); the command
itself is in :mod:`prunegym.agents.cli`."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from prunegym.baselines import POLICIES

from .evaluation.calibration import CALIBRATION_SEEDS
from .evaluation.headroom import DEFAULT_POLICY, EVALUATION_SEEDS, FIELDS, check_instances
from .evaluation.tuning import TUNING_SEEDS

__all__ = ["add_headroom_parser", "parse_instances"]


def _number(text: str, item: str) -> float:
    """One value of an ``--instances`` item (an int where written as one)."""
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise ValueError(f"--instances {item!r}: {text.strip()!r} is not a number") from None


def parse_instances(items: Iterable[str]) -> list[dict[str, Any]]:
    """``["label_noise=0,0.2"]`` -> ``[{"label_noise": 0}, {"label_noise": 0.2}]``; several fields give their grid
    (the first varying slowest), checked by :func:`~prunegym.agents.evaluation.headroom.check_instances`.
    One-line ``ValueError`` naming the bad item and the allowed fields."""
    fields: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = (part.strip() for part in str(item).partition("="))
        if not sep or name not in FIELDS or not values:
            raise ValueError(
                f"malformed --instances item {item!r}: expected FIELD=V1,V2,... with FIELD one of "
                f"{', '.join(FIELDS)}, e.g. label_noise=0,0.2,0.4"
            )
        if name in fields:
            raise ValueError(f"--instances field {name!r} given twice; give its values once, comma-separated")
        fields[name] = [_number(v, item) for v in values.split(",")]
    return check_instances(dict(zip(fields, combo)) for combo in itertools.product(*fields.values()))


def add_headroom_parser(
    sub: argparse._SubParsersAction,
    add_common: Callable[[argparse.ArgumentParser], None],
    add_ray: Callable[[argparse.ArgumentParser, str], None],
    seed: Callable[[str], int],
) -> None:
    """Register ``headroom`` on ``sub``: ``add_common`` adds --env, --env-kwargs, --gym-packages and --quiet,
    ``add_ray`` the Ray options, ``seed`` is the argparse type of a seed."""
    statics = [n for n, c in POLICIES.items() if c.requires_budget]
    h = sub.add_parser(
        "headroom",
        help="what knowing the data regime is worth to a static schedule",
        description="Tune a static policy with Optuna (as `tune`) once for a whole set of instances (data regimes; "
        "objective: the mean over them) and once per instance, at each budget; then play both, every published "
        "baseline (calibrated per instance and budget) and full data on held-out seeds and report per instance and "
        "on average: test accuracy with 95% intervals, paired differences from the single best and the headroom "
        "(per-instance best minus single best). Writes OUT/headroom.md, .csv, .png, OUT/runs (TensorBoard), "
        "OUT/eval/<instance> (each a `compare --budgets` folder) and the single best to OUT/tuned, where "
        "`compare --budgets --tuned OUT/tuned` finds it. Resumable: a rerun continues the studies and skips the "
        "episodes already played.",
    )
    add_common(h)
    h.add_argument(
        "--instances",
        nargs="+",
        required=True,
        metavar="FIELD=V1,V2",
        help=f"the instances: FIELD ({', '.join(FIELDS)}) and its values; several fields give their grid, e.g. "
        "label_noise=0,0.2,0.4 or imbalance=1,10,100",
    )
    h.add_argument(
        "--budgets",
        nargs="+",
        required=True,
        type=float,
        metavar="B",
        help="compute budgets: fractions in (0, 1] of the full-data run's training FLOPs, e.g. 0.3 0.5",
    )
    h.add_argument("--trials", required=True, type=int, metavar="T", help="finished trials each study should have")
    h.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        choices=statics,
        help=f"the static policy tuned (default {DEFAULT_POLICY}: static_schedule with a sharpness ramp)",
    )
    h.add_argument(
        "--policies", nargs="+", default=None, metavar="NAME", help="published baselines played (default: all)"
    )
    for flag, defaults, what in (
        ("--seeds", EVALUATION_SEEDS, "held-out evaluation seeds"),
        ("--tuning-seeds", TUNING_SEEDS, "tuning seeds"),
        ("--calibration-seeds", CALIBRATION_SEEDS, "seeds the baselines' knobs are calibrated on"),
    ):
        default = " ".join(map(str, defaults))
        h.add_argument(
            flag, nargs="+", type=seed, default=list(defaults), metavar="S", help=f"{what} (default {default})"
        )
    h.add_argument("--sampler-seed", type=seed, default=0, metavar="S", help="seed of the TPE samplers (default 0)")
    h.add_argument("--out", default="headroom", metavar="DIR", help="output folder (default headroom)")
    h.add_argument(
        "--batched", action="store_true", help="play each policy's seeds as one batch (see evaluate --batched)"
    )
    add_ray(h, "episode")
