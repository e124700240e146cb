"""Return of constant actions of the ``learned`` pruner: the landscape an agent searches (issue 7).

For every (prune ratio, knob setting, seed) in the grid: one episode of ``--env`` with the ``learned`` pruner
and the same action at every epoch (the first epoch is the pruner's full-data warm-up whatever the action).
Records the episode return (reward ``tradeoff`` at the env's default compute weight unless ``--env-kwargs``
says otherwise), final validation and test accuracy and the compute fraction. Seeds default to 5000-5002:
neither the held-out evaluation seeds (0-4), nor the agents' training (>= 1,000,000) or periodic evaluation
(10,000 and up) seeds.

Results go to ``--out`` (JSON, rewritten atomically after every episode) and a Markdown table beside it
(``.md``: mean return over the seeds, and the mean paired difference against the epsilon-greedy baseline's
setting, ratio 0.5 and ``greedy`` 0.9); episodes already in the JSON are skipped, so an interrupted run
resumes. ``--part i/k`` runs every k-th episode (to split the grid over processes; a final run without
``--part`` writes the table). Example::

    PRUNEGYM_DATA=/work/main/data OMP_NUM_THREADS=1 python benchmarks/action_landscape.py \\
        --out benchmarks/results/agents/action_landscape.json
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import statistics
from pathlib import Path

import gymnasium
import torch

import prunegym.envs  # noqa: F401  (registers the prunegym/ ids)
from prunegym.agents.cli import parse_kv  # K=V parsing shared with the CLI
from prunegym.agents.rollout import play_episode
from prunegym.training import resolve_device, runtime
from prunegym.training.io import write_text_atomic

# Knob settings of the learned pruner (see baselines/learned.py for the mapping of the baselines).
KNOBS: dict[str, dict[str, float]] = {
    "uniform": {},
    "eps_greedy": {"greedy": 0.9},
    "soft_hard": {"sharpness": 0.5},
    "soft_hard_rescaled": {"sharpness": 0.5, "rescale": 1.0},
    "uniform_rescaled": {"rescale": 1.0},
}
RATIOS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
REFERENCE = ("eps_greedy", 0.5)  # the epsilon_greedy baseline's default action (prune ratio 0.5, epsilon 0.1)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="prunegym/FashionMNIST-MLP-v0")
    ap.add_argument(
        "--env-kwargs",
        nargs="*",
        default=["epochs=10"],
        metavar="K=V",
        help="env arguments (default epochs=10); pruner is always 'learned'",
    )
    ap.add_argument("--seeds", type=str, default="5000,5001,5002", help="comma-separated run seeds")
    ap.add_argument("--ratios", type=str, default=",".join(map(str, RATIOS)), help="comma-separated prune ratios")
    ap.add_argument("--knobs", type=str, default=",".join(KNOBS), help=f"comma-separated from {', '.join(KNOBS)}")
    ap.add_argument("--part", type=str, default="0/1", help="i/k: run every k-th episode starting at i")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/agents/action_landscape.json"))
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    args.knobs = [k.strip() for k in args.knobs.split(",") if k.strip()]
    bad = [k for k in args.knobs if k not in KNOBS]
    if bad:
        ap.error(f"unknown knob settings {bad}; allowed: {', '.join(KNOBS)}")
    try:
        i, k = (int(x) for x in args.part.split("/"))
        if not 0 <= i < k:
            raise ValueError
    except ValueError:
        ap.error(f"--part {args.part!r} must be i/k with 0 <= i < k")
    args.part = (i, k)
    kwargs = parse_kv(args.env_kwargs)
    kwargs.pop("pruner", None)
    args.env_kwargs = kwargs
    return args


class ConstantAction:
    """A policy (SB3's ``predict``) that plays the same action at every step."""

    def __init__(self, action):
        self.action = action

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return self.action, state


def run_one(env, ratio: float, knobs: dict[str, float], seed: int) -> dict:
    """One episode with the constant action (``ratio``, ``knobs``), through the evaluation harness's episode
    loop (:func:`prunegym.agents.rollout.play_episode`); returns its metrics."""
    policy = ConstantAction(env.unwrapped.encode_action(prune_ratio=ratio, **knobs))
    infos, rewards = play_episode(env, policy, seed)
    last = infos[-1]
    return {
        "episode_return": sum(rewards),
        "val_accuracy": last["val_accuracy"],
        "test_accuracy": last["test_accuracy"],
        "compute_fraction": last["compute_fraction_total"],
    }


def table(rows: list[dict]) -> str:
    """Markdown: mean return per (knobs, ratio), and the paired difference against :data:`REFERENCE`."""
    by = {(r["knobs"], r["ratio"], r["seed"]): r for r in rows}
    ref = {s: r["episode_return"] for (k, ra, s), r in by.items() if (k, ra) == REFERENCE}
    knobs = list(dict.fromkeys(r["knobs"] for r in rows))
    ratios = sorted({r["ratio"] for r in rows})
    lines = ["| knobs | " + " | ".join(f"r = {r:g}" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
    for k in knobs:
        cells = []
        for ra in ratios:
            eps = [r for key, r in sorted(by.items()) if key[:2] == (k, ra)]
            if not eps:
                cells.append("")
                continue
            mean = statistics.fmean(e["episode_return"] for e in eps)
            diffs = [e["episode_return"] - ref[e["seed"]] for e in eps if e["seed"] in ref]
            cell = f"{mean:.4f}"
            if diffs and (k, ra) != REFERENCE:
                cell += f" ({statistics.fmean(diffs):+.4f})"
            cells.append(cell)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    comp = {ra: statistics.fmean(r["compute_fraction"] for r in rows if r["ratio"] == ra) for ra in ratios}
    lines.append("| compute fraction | " + " | ".join(f"{comp[ra]:.3f}" for ra in ratios) + " |")
    return "\n".join(lines) + "\n"


def append_row(out: Path, row: dict) -> list[dict]:
    """Add ``row`` to the JSON list at ``out`` (atomic rewrite) under an exclusive lock on ``out.lock``, so
    that ``--part`` processes sharing ``out`` never lose each other's rows; returns the new list."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = json.loads(out.read_text()) if out.exists() else []
            rows.append(row)
            write_text_atomic(out, json.dumps(rows, indent=1))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict] = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["knobs"], r["ratio"], r["seed"]) for r in rows}
    grid = list(itertools.product(args.knobs, args.ratios, args.seeds))
    i, k = args.part
    todo = [g for n, g in enumerate(grid) if n % k == i and g not in done]
    env = gymnasium.make(args.env, pruner="learned", **args.env_kwargs)
    try:
        for n, (name, ratio, seed) in enumerate(todo, 1):
            row = {
                "env_id": args.env,
                "env_kwargs": args.env_kwargs,
                "knobs": name,
                "action": KNOBS[name],
                "ratio": ratio,
                "seed": seed,
                **run_one(env, ratio, KNOBS[name], seed),
                "runtime": runtime(resolve_device(env.unwrapped.base_config.device)),
            }
            print(f"[{n}/{len(todo)}] {name} r={ratio:g} seed={seed}: return {row['episode_return']:.4f}", flush=True)
            rows = append_row(args.out, row)
    finally:
        env.close()
    if k == 1:
        write_text_atomic(args.out.with_suffix(".md"), table(rows))


if __name__ == "__main__":
    main()
