"""The ``prunegym`` command line: ``list``, ``train``, ``evaluate``, ``compare``, ``tune``, ``headroom``
(``prunegym <command> --help``; the arguments are in :mod:`prunegym.agents.cli_parser` and, for ``headroom``,
:mod:`prunegym.agents.cli_headroom`).

Bad arguments (unknown env id, policy or algo, malformed ``k=v``, missing file) print one line
``prunegym <command>: error: ...`` naming the allowed values and exit with status 2, without a traceback.
Env kwargs are ``key=value`` pairs; values are Python literals (``5``, ``0.1``, ``True``, ``None``,
``'text'``; ``true`` / ``false`` / ``none`` too) and anything else is a string. ``PRUNEGYM_DEBUG=1`` shows
the traceback of a ``ValueError`` instead of the one-line message. ``--gym-packages M ...`` imports modules
that register envs of your own before the env id is read.

``evaluate`` and ``compare`` run their episodes on Ray with ``--workers N`` (a local Ray, started and shut
down by the command) or ``--ray-address ADDR`` (a running cluster); ``train --vec-env ray`` makes each
training env a Ray actor. Without Ray installed these exit with status 2 and the install command. When
some episodes fail (Ray runs report them instead of stopping) or diverge, the command exits with status 1.
Ctrl-C prints the command that resumes and exits with status 130.

``prunegym --float-path avx2 <command> ...`` runs the command under that CPU float path (see
:mod:`prunegym.training.provenance`), re-executing itself with the pinning environment variables when this
process runs another; ``evaluate --reproduce`` takes a saved agent's recorded float path and thread count.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence

from prunegym.baselines import POLICIES, PRUNERS
from prunegym.envs import ENV_IDS
from prunegym.training.provenance import FLOAT_PATHS, float_path, float_path_env

from .cli_headroom import parse_instances
from .cli_parser import CLIError, build_parser, parse_kv, ray_options
from .cli_text import command_line as _command
from .cli_text import errors_line as _errors_line
from .cli_text import replace_seeds as _replace_seeds
from .cli_text import row_table as _row_table
from .env_factory import canonical_env_id, known_env_ids
from .evaluation.episode import policy_spec
from .evaluation.harness import Comparison, Interrupted, compare, evaluate
from .evaluation.headroom import headroom
from .evaluation.matched_compute import BudgetComparison, compare_budgets
from .evaluation.report import markdown_table, summarize
from .evaluation.tuning import tune
from .parallel.ray_tasks import RayUnavailable
from .sb3.agent import ALGOS, agent_runtime
from .sb3.pretrained import PREFIX, pretrained_names, pretrained_path
from .sb3.train import train_agent

__all__ = ["CLIError", "build_parser", "main", "parse_kv"]


def _cmd_list(args) -> int:
    print("env ids:")
    for env_id in known_env_ids():
        task = ENV_IDS.get(env_id, ("?",))[0]
        print(f"  {env_id}  (task {task})")
    print("pruners: " + ", ".join(PRUNERS))
    print("policies:")
    for name, cls in POLICIES.items():
        defaults = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items())
        print(f"  {name}  (pruner {cls.pruner}{'; ' + defaults if defaults else ''})")
    print("algos: " + ", ".join(ALGOS))
    print("pretrained agents: " + (", ".join(f"pretrained:{n}" for n in pretrained_names()) or "none"))
    return 0


def _cmd_train(args) -> int:
    canonical_env_id(args.env)
    try:
        agent = train_agent(
            args.algo,
            args.env,
            args.total_timesteps,
            args.seed,
            env_kwargs=parse_kv(args.env_kwargs),
            hyperparams=parse_kv(args.hyperparams, "--hyperparams"),
            hyperparams_file=args.hyperparams_file,
            n_envs=args.n_envs,
            out=args.out,
            tensorboard_log=args.tensorboard_log or None,
            eval_freq=args.eval_freq,
            n_eval_episodes=args.n_eval_episodes,
            checkpoint_freq=args.checkpoint_freq,
            resume=args.resume,
            overwrite=args.overwrite,
            device=args.device,
            verbose=args.verbose,
            progress=not args.quiet,
            vec_env=args.vec_env,
            ray=ray_options(args),
        )
    except KeyboardInterrupt:
        argv = [a for a in args.argv if a != "--overwrite"] + ([] if args.resume else ["--resume"])
        print(f"prunegym train: interrupted; a checkpoint was saved; continue with: {_command(argv)}", file=sys.stderr)
        return 130
    print(f"saved {agent.path} ({agent.meta['num_timesteps']} timesteps)")
    return 0


def _cmd_evaluate(args) -> int:
    try:
        rows = evaluate(
            args.policy,
            args.env,
            args.seeds,
            results=args.results,
            tensorboard_log=args.tensorboard_log,
            name=args.name,
            hparams=parse_kv(args.hparams, "--hparams") or None,
            env_kwargs=parse_kv(args.env_kwargs),
            progress=not args.quiet,
            batched=args.batched,
            ray=ray_options(args),
        )
    except Interrupted as exc:
        done = {int(r["seed"]) for r in exc.done}
        left = [s for s in args.seeds if s not in done]
        print(
            f"prunegym evaluate: interrupted; {len(done)} finished episode(s) are in {args.results}; evaluate the "
            f"remaining seeds with: {_command(_replace_seeds(args.argv, left))}",
            file=sys.stderr,
        )
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
    common = dict(
        policies=args.policies,
        agents=agents,
        out=args.out,
        env_kwargs=parse_kv(args.env_kwargs),
        progress=not args.quiet,
        skip_done=not args.rerun,
        batched=args.batched,
        ray=ray_options(args),
    )
    result: BudgetComparison | Comparison
    try:
        if args.budgets is not None:
            tuned = None if str(args.tuned).lower() == "none" else args.tuned
            result = compare_budgets(
                args.env, args.seeds, args.budgets, tuned=tuned, calibration_seeds=args.calibration_seeds, **common
            )
        else:
            result = compare(args.env, args.seeds, **common)
    except Interrupted as exc:
        print(
            f"prunegym compare: interrupted; {len(exc.done)} episode(s) of this run are saved in {args.out}; "
            f"resume with: {_command(args.argv)}",
            file=sys.stderr,
        )
        return 130
    print(result.markdown, end="")
    print(f"ran {result.ran} episode(s), skipped {result.skipped} already in {result.results}")
    print(f"figure {result.figure}; tables {result.table_md}, {result.table_csv}; TensorBoard {result.tensorboard_log}")
    errors = _errors_line(result.rows)
    if errors:
        print(f"prunegym compare: {errors}", file=sys.stderr)
        return 1
    return 0


def _cmd_tune(args) -> int:
    try:
        result = tune(
            args.env,
            args.policy,
            args.budget,
            args.trials,
            out=args.out,
            env_kwargs=parse_kv(args.env_kwargs),
            seeds=args.seeds,
            sampler_seed=args.sampler_seed,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print(
            f"prunegym tune: interrupted; the finished trials are in the study under {args.out}; resume with: "
            f"{_command(args.argv)}",
            file=sys.stderr,
        )
        return 130
    settings = ", ".join(
        (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}") + (" (calibrated)" if k in result.fixed else "")
        for k, v in result.params.items()
    )
    print(f"{args.policy} at budget {args.budget:g}: best mean validation accuracy {result.value:.4f} with {settings}")
    print(f"{result.n_trials} trial(s), {result.n_episodes} episode(s) on seeds {result.seeds}; study {result.storage}")
    return 0


def _cmd_headroom(args) -> int:
    instances = parse_instances(args.instances)  # a malformed item fails before anything runs
    try:
        result = headroom(
            args.env,
            instances,
            args.budgets,
            args.trials,
            out=args.out,
            policy=args.policy,
            policies=args.policies,
            env_kwargs=parse_kv(args.env_kwargs),
            tuning_seeds=args.tuning_seeds,
            seeds=args.seeds,
            sampler_seed=args.sampler_seed,
            calibration_seeds=args.calibration_seeds,
            progress=not args.quiet,
            ray=ray_options(args),
            batched=args.batched,
        )
    except KeyboardInterrupt:
        print(
            f"prunegym headroom: interrupted; the finished trials and episodes are saved under {args.out}; resume "
            f"with: {_command(args.argv)}",
            file=sys.stderr,
        )
        return 130
    print(result.markdown, end="")
    tuned = result.out / "tuned"
    print(f"ran {result.ran} episode(s), skipped {result.skipped} already played; single best for compare in {tuned}")
    print(f"figure {result.figure}; tables {result.table_md}, {result.table_csv}; TensorBoard {result.out}")
    errors = _errors_line(result.rows)
    if errors:
        print(f"prunegym headroom: {errors}", file=sys.stderr)
        return 1
    return 0


_COMMANDS = {
    "list": _cmd_list,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "compare": _cmd_compare,
    "tune": _cmd_tune,
    "headroom": _cmd_headroom,
}


def _import_gym_packages(modules: Sequence[str]) -> None:
    """Import the ``--gym-packages`` modules (they register envs); an unimportable one is a usage error."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise CLIError(f"--gym-packages {name!r} cannot be imported ({exc})") from exc


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _warning_line(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"prunegym: warning: {_one_line(str(message))}\n"


_PINNED = "PRUNEGYM_FLOAT_PATH"  # set in the re-executed process: the float path it was started to run under


def _reproduce_argv(args, argv: list[str]) -> list[str]:
    """``evaluate --reproduce``: ``argv`` without it, with the agent's recorded float path (``--float-path``) and
    torch threads (``--cpus-per-run``, unless given)."""
    policy = str(args.policy)
    if policy in POLICIES:
        raise CLIError(f"--reproduce needs a saved or shipped agent, not the baseline {policy!r}: use --float-path")
    recorded = agent_runtime(pretrained_path(policy) if policy.startswith(PREFIX) else policy)
    if recorded is None:
        raise CLIError(
            f"--reproduce: {policy!r} records no runtime (a saved agent's .json beside its .zip does); use --float-path"
        )
    path = str(recorded.get("float_path") or "")
    if path.lower() not in FLOAT_PATHS:
        raise CLIError(
            f"--reproduce: {policy!r} records float path {path or None!r}, which cannot be pinned (allowed: "
            f"{', '.join(FLOAT_PATHS)}); use --float-path"
        )
    if args.float_path not in (None, path.lower()):
        raise CLIError(f"--reproduce: {policy!r} was measured under {path}, not --float-path {args.float_path}")
    out = [a for a in argv if a != "--reproduce"]
    if args.float_path is None:
        out = ["--float-path", path.lower(), *out]
    if args.cpus_per_run is None and recorded.get("torch_threads"):
        out += ["--cpus-per-run", str(int(recorded["torch_threads"]))]
    return out


def _pin_float_path(path: str, argv: list[str]) -> None:
    """Run under float path ``path`` (``--float-path``): return if this process already does, else re-execute
    the command with the variables of :func:`~prunegym.training.float_path_env` set (torch reads them when it
    is imported). A path this CPU cannot run (higher than its best) is a usage error."""
    want = path.upper()
    now = float_path()
    if now == want:
        return
    if os.environ.get(_PINNED) == want:  # already re-executed, and torch still runs another path
        raise CLIError(
            f"--float-path {path}: this CPU runs float path {now}; a float path above the CPU's best cannot be "
            "forced (a lower one can)"
        )
    os.environ.update(float_path_env(path))
    os.environ[_PINNED] = want
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "prunegym.agents", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``prunegym`` command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    Warnings print as one line each (``prunegym: warning: ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = _warning_line
    command = next((a for a in argv if a in _COMMANDS), None)
    prefix = f"prunegym {command}" if command else "prunegym"
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "reproduce", False):
            argv = _reproduce_argv(args, argv)
            args = build_parser().parse_args(argv)
        if args.float_path is not None:
            _pin_float_path(args.float_path, argv)  # re-executes the command where needed
        args.argv = argv
        if hasattr(args, "env_kwargs"):
            parse_kv(args.env_kwargs)  # malformed pairs fail before anything runs
        _import_gym_packages(getattr(args, "gym_packages", []))
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:  # while loading and checking, before any episode
        print(f"{prefix}: interrupted; nothing was run yet; run the same command again", file=sys.stderr)
        return 130
    except CLIError as exc:
        msg = _one_line(str(exc))
        print(msg if msg.startswith("prunegym") else f"{prefix}: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except RayUnavailable as exc:  # --workers / --ray-address / --vec-env ray without Ray
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("PRUNEGYM_DEBUG"):
            raise
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # the dataset is missing (prunegym.training.DatasetMissingError)
        if os.environ.get("PRUNEGYM_DEBUG") or type(exc).__name__ != "DatasetMissingError":
            raise
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
