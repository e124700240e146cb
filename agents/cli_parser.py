"""The ``prunegym`` command line's arguments: every subcommand's parser, the ``key=value`` reader and the
one-line usage error. The commands themselves are in :mod:`prunegym.agents.cli`."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from typing import Any

from prunegym.training import check_seed
from prunegym.training.provenance import FLOAT_PATHS

from .cli_headroom import add_headroom_parser
from .evaluation.calibration import CALIBRATION_SEEDS
from .evaluation.tuning import SHIPPED_TUNED, TUNING_SEEDS
from .parallel.ray_tasks import RayOptions
from .sb3.agent import ALGOS
from .sb3.vec_envs import VEC_ENVS

__all__ = ["CLIError", "build_parser", "parse_kv", "ray_options"]

_LOWER_LITERALS = {"true": True, "false": False, "none": None, "null": None}
_TRUST = (
    "Agent files (SB3 .zip, vecnormalize.pkl) are pickle-based: loading one runs the code it carries, as with SB3's "
    "own load; load only files you trust. pretrained:<name> loads only the agents shipped with prunegym."
)


class CLIError(Exception):
    """A usage error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the usage and exit
        raise CLIError(f"{self.prog}: error: {message}")


def _seed(text: str) -> int:
    """argparse type of a seed: an int in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (a seed is an int in [0, 2**63))") from None
    try:
        return check_seed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_kv(items: Sequence[str] | None, what: str = "--env-kwargs") -> dict[str, Any]:
    """``["epochs=5", "pruner=uniform"]`` -> ``{"epochs": 5, "pruner": "uniform"}`` (literal values)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CLIError(f"malformed {what} item {item!r}: expected key=value, e.g. epochs=5")
        text = text.strip()
        value: Any
        if text.lower() in _LOWER_LITERALS:
            value = _LOWER_LITERALS[text.lower()]
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = text
        out[key] = value
    return out


DATA_HELP = (
    "datasets are read from the data root, $PRUNEGYM_DATA (default ~/.cache/prunegym/data), in "
    "torchvision's layout, e.g. FashionMNIST/raw/*.gz; the synthetic task needs no files"
)


def _add_common(p: argparse.ArgumentParser, env_required: bool = True) -> None:
    p.add_argument(
        "--env",
        required=env_required,
        metavar="ID",
        help=f"env id, e.g. prunegym/Synthetic-MLP-v0 (see `prunegym list`); {DATA_HELP}",
    )
    p.add_argument(
        "--env-kwargs",
        nargs="+",
        default=[],
        metavar="K=V",
        help="env arguments, e.g. epochs=5 train_size=2000 compute_weight=0.2",
    )
    p.add_argument(
        "--gym-packages",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="modules to import first, which register envs of your own (RL Zoo's convention), e.g. "
        "a module that calls prunegym.envs.register_task",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_ray(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group('parallel runs on Ray (needs pip install -e ".[ray]")')
    if what == "episode":
        g.add_argument(
            "--workers",
            type=int,
            default=None,
            metavar="N",
            help="run the episodes as Ray tasks on a local Ray with N workers (started and shut down "
            "by the command); with --ray-address: at most N episodes at once",
        )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join a running Ray cluster ('auto' for `ray start` on this machine, or host:port) "
        "instead of starting one; the cluster keeps running afterwards",
    )
    g.add_argument(
        "--cpus-per-run",
        type=float,
        default=None,
        metavar="C",
        help=f"CPUs each {what} reserves and its torch threads (default 1)"
        + (
            "; without Ray: the episodes' torch threads (default: torch's). CPU results can depend "
            "on it: a run without Ray equals a Ray run with the same value"
            if what == "episode"
            else ""
        ),
    )
    g.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        metavar="G",
        help=f"GPUs each {what} reserves, e.g. 0.25 for four per GPU (default 0; the env also needs "
        "--env-kwargs device=cuda)",
    )


def ray_options(args) -> RayOptions:
    """The command's Ray settings as the one :class:`RayOptions` it passes down (checked there, once)."""
    return RayOptions(getattr(args, "workers", None), args.ray_address, args.cpus_per_run, args.gpus_per_run)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``prunegym`` command and its subcommands."""
    parser = _Parser(
        prog="prunegym",
        description="Dynamic data pruning as a Gymnasium env: train agents, "
        "evaluate and compare them with the published baselines.",
    )
    parser.add_argument(
        "--float-path",
        type=str.lower,
        choices=FLOAT_PATHS,
        default=None,
        help="run under this CPU float path: torch's ATen, oneDNN and (on Intel CPUs) MKL kernels pinned to "
        "that instruction set, the command re-executing itself with the environment variables set. A lower "
        "one than the CPU's best can be forced, a higher one cannot: results recorded under AVX2 reproduce "
        "bit for bit on an AVX-512 CPU with --float-path avx2 (README: Reproducing exactly)",
    )
    names = "{list,train,evaluate,compare,tune,headroom}"
    sub = parser.add_subparsers(dest="command", metavar=names, required=True, parser_class=_Parser)
    sub.add_parser(
        "list",
        help="env ids, pruners, policies and algos",
        description="List the env ids, pruners, baseline policies and RL algorithms.",
    )
    for add in (_add_train_parser, _add_evaluate_parser, _add_compare_parser, _add_tune_parser):
        add(sub)
    add_headroom_parser(sub, _add_common, _add_ray, _seed)  # in its own module: this one is near its size limit
    return parser


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train",
        help="train an SB3 agent",
        description="Train an SB3 agent with the shipped "
        "RL-Zoo-format hyperparameters and save it (model.zip + model.json) to --out.",
    )
    t.add_argument("--algo", required=True, choices=ALGOS, help="RL algorithm (dqn uses DiscreteRatio)")
    _add_common(t)
    t.add_argument(
        "--total-timesteps",
        type=int,
        default=None,
        metavar="N",
        help="env steps (default: n_timesteps of the hyperparameter file)",
    )
    t.add_argument("--seed", type=_seed, default=0, help="training seed in [0, 2**63) (default 0)")
    t.add_argument(
        "--tensorboard-log",
        default="runs",
        metavar="DIR",
        help="TensorBoard root; the run is DIR/<env>/<algo>/seed<k> (default runs; '' for none)",
    )
    t.add_argument("--n-envs", type=int, default=None, metavar="K", help="parallel envs (default: the file's)")
    t.add_argument(
        "--vec-env",
        default="auto",
        choices=VEC_ENVS,
        help="how the envs run: dummy (this process), subproc (one process each), ray (one Ray actor "
        "each, see below), batched (all K training runs as one batched model in this process) or auto "
        "(subproc when K > 1; default)",
    )
    t.add_argument(
        "--hyperparams",
        nargs="+",
        default=[],
        metavar="K=V",
        help="override zoo hyperparameters, e.g. n_steps=20 learning_rate=1e-4",
    )
    t.add_argument("--hyperparams-file", default=None, metavar="YML", help="a zoo-format file instead of ours")
    t.add_argument("--out", default=None, metavar="DIR", help="agent folder (default trained/<env>/<algo>/seed<k>)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in --out (your own files: checkpoints are pickle-based)",
    )
    t.add_argument("--overwrite", action="store_true", help="start afresh even if --out has checkpoints")
    t.add_argument(
        "--eval-freq",
        type=int,
        default=None,
        metavar="N",
        help="held-out evaluation every N env steps (default total/10; 0: off)",
    )
    t.add_argument(
        "--n-eval-episodes", type=int, default=5, metavar="N", help="held-out seeds 10000..10000+N-1 (default 5)"
    )
    t.add_argument(
        "--checkpoint-freq",
        type=int,
        default=None,
        metavar="N",
        help="checkpoint every N env steps (default total/10; 0: only at the end)",
    )
    t.add_argument("--device", default="cpu", help="torch device of the agent's networks (default cpu)")
    t.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="SB3 verbosity")
    _add_ray(t, "env actor (--vec-env ray)")


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "evaluate",
        help="evaluate a baseline or a saved agent",
        description="One deterministic episode per seed; prints a table and appends the rows "
        "to --results. Exits 1 if an episode failed or diverged. " + _TRUST,
    )
    e.add_argument(
        "--policy",
        required=True,
        metavar="NAME|PATH.zip",
        help="a baseline policy name (see `prunegym list`), a saved agent .zip or pretrained:<name>",
    )
    _add_common(e)
    e.add_argument(
        "--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="S", help="seeds in [0, 2**63) (default 0 1 2)"
    )
    e.add_argument(
        "--hparams", nargs="+", default=[], metavar="K=V", help="baseline hyperparameters, e.g. prune_ratio=0.3"
    )
    e.add_argument("--name", default=None, help="label in results and TensorBoard (default: the policy's)")
    e.add_argument(
        "--reproduce",
        action="store_true",
        help="run as a saved or shipped agent's published results were measured: its recorded float path "
        "(--float-path) and torch thread count (--cpus-per-run, unless given); warns about the versions "
        "that still differ",
    )
    e.add_argument("--results", default="results.jsonl", metavar="FILE", help="default results.jsonl")
    e.add_argument(
        "--tensorboard-log",
        default=None,
        metavar="DIR",
        help="TensorBoard root; runs DIR/<env>/<policy>/seed<k> (default: none)",
    )
    e.add_argument(
        "--batched",
        action="store_true",
        help="play the seeds as one batch of a PruningVectorEnv (one "
        "stacked model; rows equal within float rounding; not for PFB or BatchNorm models)",
    )
    _add_ray(e, "episode")


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compare",
        help="compare baselines (and agents) on the same seeds",
        description="Every baseline (or --policies) and the --agent files on the same seeds: OUT/results.jsonl, "
        "OUT/runs (TensorBoard), OUT/accuracy_vs_compute.png, OUT/summary.md and OUT/summary.csv. (policy, seed) pairs "
        "already in OUT/results.jsonl with the same env kwargs, the same policy (an agent file's content hash, a "
        "baseline's hyperparameters) and prunegym version, and with their TensorBoard run, are skipped. OUT is locked "
        "while the command runs. Exits 1 if an episode failed or diverged. " + _TRUST,
    )
    _add_common(c)
    c.add_argument(
        "--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="S", help="seeds in [0, 2**63) (default 0 1 2)"
    )
    c.add_argument(
        "--policies",
        nargs="+",
        default=None,
        metavar="NAME",
        help="baseline names (default: all of them; see `prunegym list`)",
    )
    c.add_argument(
        "--agent",
        nargs="+",
        action="extend",
        default=[],
        metavar="[LABEL=]PATH.zip",
        help="saved agents to include (or pretrained:<name>); LABEL= names one in the tables (default: "
        "its recorded <algo>_<pruner>), e.g. to compare two agents of one algo and pruner",
    )
    c.add_argument("--out", default="compare", metavar="DIR", help="output folder (default compare)")
    c.add_argument(
        "--rerun",
        action="store_true",
        help="run every pair even if already in OUT/results.jsonl; "
        "its new row and TensorBoard run replace the earlier ones",
    )
    c.add_argument(
        "--batched",
        action="store_true",
        help="play each policy's seeds as one batch of a PruningVectorEnv (see evaluate --batched)",
    )
    b = c.add_argument_group("accuracy at matched compute (--budgets)")
    b.add_argument(
        "--budgets",
        nargs="+",
        type=float,
        default=None,
        metavar="B",
        help="compare at these compute budgets (fractions of the full-data run's training FLOPs, e.g. "
        "0.3 0.5 0.7): every baseline's main knob is calibrated to each budget, the static schedules "
        "take their tuned settings, full data is the reference line; figure OUT/accuracy_vs_budget.png "
        "and one table per budget",
    )
    b.add_argument(
        "--tuned",
        default=str(SHIPPED_TUNED),
        metavar="DIR",
        help="where `prunegym tune` wrote the settings of static_const / static_schedule (default: the "
        "ones shipped with prunegym; 'none' for their neutral defaults)",
    )
    b.add_argument(
        "--calibration-seeds",
        nargs="+",
        type=_seed,
        default=list(CALIBRATION_SEEDS),
        metavar="S",
        help=f"seeds the baselines' knobs are calibrated on (default {' '.join(map(str, CALIBRATION_SEEDS))}; "
        "keep them apart from --seeds)",
    )
    _add_ray(c, "episode")


def _add_tune_parser(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser(
        "tune",
        help="tune a policy's knobs at a compute budget (Optuna)",
        description="Tune a fixed policy's knobs (static_const: sharpness, rescale, greedy; static_schedule: also "
        "tilt; other baselines: their pruner's knobs, the main knob calibrated) at a compute budget with Optuna's TPE "
        "sampler, seeded, on tuning seeds (objective: mean final validation accuracy; the test set is never read). The "
        "study is an SQLite file under --out, so an interrupted tuning resumes; the best settings go to "
        "OUT/<env>/<policy>/budget<b>.json, where `compare --budgets --tuned OUT` picks them up.",
    )
    _add_common(u)
    u.add_argument("--policy", required=True, metavar="NAME", help="a policy name (see `prunegym list`)")
    u.add_argument(
        "--budget",
        required=True,
        type=float,
        metavar="B",
        help="compute budget: a fraction in (0, 1] of the full-data run's training FLOPs",
    )
    u.add_argument(
        "--trials",
        required=True,
        type=int,
        metavar="T",
        help="finished trials the study should have (each plays one episode per tuning seed)",
    )
    u.add_argument(
        "--seeds",
        nargs="+",
        type=_seed,
        default=list(TUNING_SEEDS),
        metavar="S",
        help=f"tuning seeds (default {' '.join(map(str, TUNING_SEEDS))}; keep them apart from evaluation seeds)",
    )
    u.add_argument("--sampler-seed", type=_seed, default=0, metavar="S", help="seed of the TPE sampler (default 0)")
    u.add_argument("--out", default="tuned", metavar="DIR", help="tuning folder (default tuned)")
