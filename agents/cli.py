"""The ``prunegym`` command line: ``list``, ``train``, ``evaluate``, ``compare`` (``prunegym <command> --help``).

Bad arguments (unknown env id, policy or algo, malformed ``k=v``, missing file) print one line
``prunegym <command>: error: ...`` naming the allowed values and exit with status 2, without a traceback.
Env kwargs are ``key=value`` pairs; values are Python literals (``5``, ``0.1``, ``True``, ``None``,
``'text'``; ``true`` / ``false`` / ``none`` too) and anything else is a string. ``PRUNEGYM_DEBUG=1`` shows
the traceback of a ``ValueError`` instead of the one-line message.

``evaluate`` and ``compare`` run their episodes on Ray with ``--workers N`` (a local Ray, started and shut
down by the command) or ``--ray-address ADDR`` (a running cluster, checked reachable within seconds); ``train
--vec-env ray`` makes each training env a Ray actor. Without Ray installed these exit with status 2 and the
install command. When some episodes fail (Ray runs report them instead of stopping) or diverge (non-finite
loss), ``evaluate`` and ``compare`` exit with status 1 and name them. Ctrl-C prints one line with the command
that resumes the work and exits with status 130.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from typing import Any, Sequence

from .cli_text import command_line as _command
from .cli_text import errors_line as _errors_line
from .cli_text import replace_seeds as _replace_seeds
from .cli_text import row_table as _row_table
from .parallel.ray_tasks import RayUnavailable
from .sb3.agent import ALGOS
from .sb3.vec_envs import VEC_ENVS
from prunegym.baselines import POLICIES, PRUNERS
from prunegym.envs import ENV_IDS
from .env_factory import known_env_ids
from .sb3.pretrained import pretrained_names
from .env_factory import canonical_env_id
from .sb3.train import train_agent
from .evaluation.harness import Interrupted, evaluate
from .evaluation.report import markdown_table, summarize
from prunegym.baselines import POLICIES
from .evaluation.episode import policy_spec
from .evaluation.harness import Interrupted, compare

__all__ = ["CLIError", "build_parser", "main", "parse_kv"]

_LOWER_LITERALS = {"true": True, "false": False, "none": None, "null": None}
_TRUST = ("Agent files (SB3 .zip, vecnormalize.pkl) are pickle-based: loading one runs the code it carries, as "
          "with SB3's own load; load only files you trust. pretrained:<name> loads only the agents shipped with "
          "prunegym.")


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
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed {value} is outside the allowed range [0, 2**63)")
    return value


def parse_kv(items: Sequence[str] | None, what: str = "--env-kwargs") -> dict[str, Any]:
    """``["epochs=5", "pruner=uniform"]`` -> ``{"epochs": 5, "pruner": "uniform"}`` (literal values)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CLIError(f"malformed {what} item {item!r}: expected key=value, e.g. epochs=5")
        text = text.strip()
        if text.lower() in _LOWER_LITERALS:
            value = _LOWER_LITERALS[text.lower()]
        else:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = text
        out[key] = value
    return out


def _add_common(p: argparse.ArgumentParser, env_required: bool = True) -> None:
    p.add_argument("--env", required=env_required, metavar="ID",
                   help="env id, e.g. prunegym/Synthetic-MLP-v0 (see `prunegym list`)")
    p.add_argument("--env-kwargs", nargs="+", default=[], metavar="K=V",
                   help="env arguments, e.g. epochs=5 train_size=2000 compute_weight=0.2")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_ray(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("parallel runs on Ray (needs pip install -e \".[ray]\")")
    if what == "episode":
        g.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run the episodes as Ray tasks on a local Ray with N workers (started and shut down "
                       "by the command); with --ray-address: at most N episodes at once")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster ('auto' for `ray start` on this machine, or host:port) "
                   "instead of starting one; the cluster keeps running afterwards")
    g.add_argument("--cpus-per-run", type=float, default=None, metavar="C",
                   help=f"CPUs each {what} reserves and its torch threads (default 1)"
                   + ("; without Ray: the episodes' torch threads (default: torch's). CPU results can depend "
                      "on it: a run without Ray equals a Ray run with the same value" if what == "episode" else ""))
    g.add_argument("--gpus-per-run", type=float, default=0.0, metavar="G",
                   help=f"GPUs each {what} reserves, e.g. 0.25 for four per GPU (default 0; the env also needs "
                   "--env-kwargs device=cuda)")


def _ray_kwargs(args) -> dict[str, Any]:
    out = dict(ray_address=args.ray_address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    if hasattr(args, "workers"):
        out["workers"] = args.workers
    return out


def build_parser() -> argparse.ArgumentParser:

    parser = _Parser(prog="prunegym", description="Dynamic data pruning as a Gymnasium env: train agents, "
                     "evaluate and compare them with the published baselines.")
    sub = parser.add_subparsers(dest="command", metavar="{list,train,evaluate,compare}", parser_class=_Parser)
    sub.required = True

    sub.add_parser("list", help="env ids, pruners, policies and algos",
                   description="List the env ids, pruners, baseline policies and RL algorithms.")

    t = sub.add_parser("train", help="train an SB3 agent", description="Train an SB3 agent with the shipped "
                       "RL-Zoo-format hyperparameters and save it (model.zip + model.json) to --out.")
    t.add_argument("--algo", required=True, choices=ALGOS, help="RL algorithm (dqn uses DiscreteRatio)")
    _add_common(t)
    t.add_argument("--total-timesteps", type=int, default=None, metavar="N",
                   help="env steps (default: n_timesteps of the hyperparameter file)")
    t.add_argument("--seed", type=_seed, default=0, help="training seed in [0, 2**63) (default 0)")
    t.add_argument("--tensorboard-log", default="runs", metavar="DIR",
                   help="TensorBoard root; the run is DIR/<env>/<algo>/seed<k> (default runs; '' for none)")
    t.add_argument("--n-envs", type=int, default=None, metavar="K", help="parallel envs (default: the file's)")
    t.add_argument("--vec-env", default="auto", choices=VEC_ENVS,
                   help="how the envs run: dummy (this process), subproc (one process each), ray (one Ray actor "
                   "each, see below) or auto (subproc when K > 1; default)")
    t.add_argument("--hyperparams", nargs="+", default=[], metavar="K=V",
                   help="override zoo hyperparameters, e.g. n_steps=20 learning_rate=1e-4")
    t.add_argument("--hyperparams-file", default=None, metavar="YML", help="a zoo-format file instead of ours")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="agent folder (default trained/<env>/<algo>/seed<k>)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out (your own "
                   "files: checkpoints are pickle-based)")
    t.add_argument("--overwrite", action="store_true", help="start afresh even if --out has checkpoints")
    t.add_argument("--eval-freq", type=int, default=None, metavar="N",
                   help="held-out evaluation every N env steps (default total/10; 0: off)")
    t.add_argument("--n-eval-episodes", type=int, default=5, metavar="N",
                   help="held-out seeds 10000..10000+N-1 (default 5)")
    t.add_argument("--checkpoint-freq", type=int, default=None, metavar="N",
                   help="checkpoint every N env steps (default total/10; 0: only at the end)")
    t.add_argument("--device", default="cpu", help="torch device of the agent's networks (default cpu)")
    t.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="SB3 verbosity")
    _add_ray(t, "env actor (--vec-env ray)")

    e = sub.add_parser("evaluate", help="evaluate a baseline or a saved agent",
                       description="One deterministic episode per seed; prints a table and appends the rows "
                       "to --results. Exits 1 if an episode failed or diverged. " + _TRUST)
    e.add_argument("--policy", required=True, metavar="NAME|PATH.zip",
                   help="a baseline policy name (see `prunegym list`), a saved agent .zip or pretrained:<name>")
    _add_common(e)
    e.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="S",
                   help="seeds in [0, 2**63) (default 0 1 2)")
    e.add_argument("--hparams", nargs="+", default=[], metavar="K=V",
                   help="baseline hyperparameters, e.g. prune_ratio=0.3")
    e.add_argument("--name", default=None, help="label in results and TensorBoard (default: the policy's)")
    e.add_argument("--results", default="results.jsonl", metavar="FILE", help="default results.jsonl")
    e.add_argument("--tensorboard-log", default=None, metavar="DIR",
                   help="TensorBoard root; runs DIR/<env>/<policy>/seed<k> (default: none)")
    _add_ray(e, "episode")

    c = sub.add_parser("compare", help="compare baselines (and agents) on the same seeds",
                       description="Every baseline (or --policies) and the --agent files on the same seeds: "
                       "OUT/results.jsonl, OUT/runs (TensorBoard), OUT/accuracy_vs_compute.png, "
                       "OUT/summary.md and OUT/summary.csv. (policy, seed) pairs already in "
                       "OUT/results.jsonl with the same env kwargs, the same policy (an agent file's content hash, "
                       "a baseline's hyperparameters) and prunegym version, and with their TensorBoard run, are "
                       "skipped. OUT is locked while the command runs. Exits 1 if an episode failed or diverged. "
                       + _TRUST)
    _add_common(c)
    c.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="S",
                   help="seeds in [0, 2**63) (default 0 1 2)")
    c.add_argument("--policies", nargs="+", default=None, metavar="NAME",
                   help="baseline names (default: all of them; see `prunegym list`)")
    c.add_argument("--agent", nargs="+", action="extend", default=[], metavar="[LABEL=]PATH.zip",
                   help="saved agents to include (or pretrained:<name>); LABEL= names one in the tables (default: "
                        "its recorded <algo>_<pruner>), e.g. to compare two agents of one algo and pruner")
    c.add_argument("--out", default="compare", metavar="DIR", help="output folder (default compare)")
    c.add_argument("--rerun", action="store_true", help="run every pair even if already in OUT/results.jsonl; "
                   "its new row and TensorBoard run replace the earlier ones")
    _add_ray(c, "episode")
    return parser


def _cmd_list(args) -> int:


    print("env ids:")
    for env_id in known_env_ids():
        task = ENV_IDS.get(env_id, ("?",))[0]
        print(f"  {env_id}  (task {task})")
    print("pruners: " + ", ".join(PRUNERS))
    print("policies:")
    for name, cls in POLICIES.items():
        defaults = ", ".join(f"{k}={v!r}" for k, v in getattr(cls, "defaults", {}).items())
        print(f"  {name}  (pruner {cls.pruner}{'; ' + defaults if defaults else ''})")
    print("algos: " + ", ".join(ALGOS))

    print("pretrained agents: " + (", ".join(f"pretrained:{n}" for n in pretrained_names()) or "none"))
    return 0


def _cmd_train(args) -> int:

    canonical_env_id(args.env)
    try:
        agent = train_agent(
            args.algo, args.env, args.total_timesteps, args.seed, env_kwargs=parse_kv(args.env_kwargs),
            hyperparams=parse_kv(args.hyperparams, "--hyperparams"), hyperparams_file=args.hyperparams_file,
            n_envs=args.n_envs, out=args.out, tensorboard_log=args.tensorboard_log or None,
            eval_freq=args.eval_freq, n_eval_episodes=args.n_eval_episodes, checkpoint_freq=args.checkpoint_freq,
            resume=args.resume, overwrite=args.overwrite, device=args.device, verbose=args.verbose,
            progress=not args.quiet, vec_env=args.vec_env, **_ray_kwargs(args))
    except KeyboardInterrupt:
        argv = [a for a in args.argv if a != "--overwrite"] + ([] if args.resume else ["--resume"])
        print(f"prunegym train: interrupted; a checkpoint was saved; continue with: {_command(argv)}", file=sys.stderr)
        return 130
    print(f"saved {agent.path} ({agent.meta['num_timesteps']} timesteps)")
    return 0


def _cmd_evaluate(args) -> int:

    try:
        rows = evaluate(args.policy, args.env, args.seeds, results=args.results,
                        tensorboard_log=args.tensorboard_log, name=args.name,
                        hparams=parse_kv(args.hparams, "--hparams") or None, env_kwargs=parse_kv(args.env_kwargs),
                        progress=not args.quiet, **_ray_kwargs(args))
    except Interrupted as exc:
        done = {int(r["seed"]) for r in exc.done}
        left = [s for s in args.seeds if s not in done]
        print(f"prunegym evaluate: interrupted; {len(done)} finished episode(s) are in {args.results}; evaluate the "
              f"remaining seeds with: {_command(_replace_seeds(args.argv, left))}", file=sys.stderr)
        return 130
    print(_row_table(rows))
    print()
    print(markdown_table(summarize(rows)), end="")
    print(f"appended {len(rows)} row(s) to {args.results}")
    errors = _errors_line(rows)
    if errors:
        print(f"prunegym evaluate: {errors}", file=sys.stderr)
        return 1
    return 0


_LABEL = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")


def _agent_arg(text: str):
    """``--agent`` item: ``PATH`` or ``LABEL=PATH`` (a label is letters, digits, ``_ . -``; no ``/``)."""


    m = _LABEL.match(text)
    if m is None:
        return text
    label, path = m.groups()
    if label in POLICIES:
        raise CLIError(f"--agent label {label!r} is a baseline's name; choose another")
    return policy_spec(path, name=label)


def _cmd_compare(args) -> int:


    if args.policies is not None:
        bad = [p for p in args.policies if p not in POLICIES]
        if bad:
            raise CLIError(f"unknown policy {bad[0]!r}; allowed: {', '.join(POLICIES)}")
    agents = [_agent_arg(a) for a in args.agent]
    try:
        result = compare(args.env, args.seeds, policies=args.policies, agents=agents, out=args.out,
                         env_kwargs=parse_kv(args.env_kwargs), progress=not args.quiet, skip_done=not args.rerun,
                         **_ray_kwargs(args))
    except Interrupted as exc:
        print(f"prunegym compare: interrupted; {len(exc.done)} episode(s) of this run are saved in {args.out}; "
              f"resume with: {_command(args.argv)}", file=sys.stderr)
        return 130
    print(result.markdown, end="")
    print(f"ran {result.ran} episode(s), skipped {result.skipped} already in {result.results}")
    print(f"figure {result.figure}; tables {result.table_md}, {result.table_csv}; TensorBoard {result.tensorboard_log}")
    errors = _errors_line(result.rows)
    if errors:
        print(f"prunegym compare: {errors}", file=sys.stderr)
        return 1
    return 0


_COMMANDS = {"list": _cmd_list, "train": _cmd_train, "evaluate": _cmd_evaluate, "compare": _cmd_compare}


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``prunegym`` command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in _COMMANDS), None)
    prefix = f"prunegym {command}" if command else "prunegym"
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        if hasattr(args, "env_kwargs"):
            parse_kv(args.env_kwargs)  # malformed pairs fail before anything heavy is imported
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:  # while loading and checking, before any episode
        print(f"{prefix}: interrupted; nothing was run yet; run the same command again", file=sys.stderr)
        return 130
    except CLIError as exc:
        msg = _one_line(exc)
        print(msg if msg.startswith("prunegym") else f"{prefix}: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except RayUnavailable as exc:  # --workers / --ray-address / --vec-env ray without Ray
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("PRUNEGYM_DEBUG"):
            raise
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the dataset is missing (prunegym.training.DatasetMissingError)
        if os.environ.get("PRUNEGYM_DEBUG") or type(exc).__name__ != "DatasetMissingError":
            raise
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
