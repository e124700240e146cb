"""Env steps per second of ``PruningVectorEnv`` (K episodes as one batched model) against K sequential
``PruningEnv``s and against SB3's ``SubprocVecEnv`` with 2 worker processes, in one run.

For each task: ``SubprocVecEnv`` of 2 ``PruningEnv``s (one torch thread per worker) once, then for each K the
batched env of K sub-envs and K sequential ``PruningEnv``s in this process. Each is reset (not timed), stepped
once as a warm-up, then ``--steps`` times; an env step is one sub-env's epoch (``decision_interval`` 1) with
its plan, validation pass and observation. ``steps/s`` counts sub-env steps: K per step of the batched env,
2 per step of ``SubprocVecEnv``. The sequential baseline steps R = min(K, --seq-envs) envs and reports their
rate (each env costs the same, and R envs keep more of their working set in cache than K would: the baseline
is favoured). Actions: prune ratio ``--prune-ratio`` of the ``uniform`` pruner (default 0.3). One torch thread
per process (``--threads``). Output: JSON (versions, machine, load average before and after, every timing)
and a Markdown table.

    python benchmarks/vector_env.py --tasks synthetic-mlp fashion_mnist-mlp --k 1 4 16 64 \\
        --out benchmarks/results/vector_env_cpu.json --markdown benchmarks/results/vector_env_cpu.md
    python benchmarks/vector_env.py --device cuda --out benchmarks/results/vector_env_cuda.json \\
        --markdown benchmarks/results/vector_env_cuda.md      # the same on a GPU

``PRUNEGYM_DATA`` must hold ``FashionMNIST/raw/*.gz`` for the Fashion-MNIST task.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (here and in the workers)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3.common.vec_env import SubprocVecEnv  # noqa: E402

from prunegym.envs import PruningEnv, PruningVectorEnv  # noqa: E402
from prunegym.training import resolve_device  # noqa: E402
from prunegym.training.provenance import machine  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_kwargs(args, task: str) -> dict:
    kw = {"pruner": "uniform", "device": args.device}
    if args.train_size is not None:
        kw["train_size"] = args.train_size
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    return kw


def timed_steps(step, n: int, device: torch.device) -> list[float]:
    """Seconds of each of ``n`` calls of ``step()`` after one warm-up call."""
    out = []
    for i in range(n + 1):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        if i:
            out.append(time.perf_counter() - t0)
    return out


def measure_batched(task: str, k: int, kw: dict, args, device: torch.device) -> dict:
    venv = PruningVectorEnv(task, k, backend=args.backend, **kw)
    t0 = time.perf_counter()
    venv.reset(seed=list(range(k)))
    reset_s = time.perf_counter() - t0
    action = np.tile(venv.encode_action(args.prune_ratio), (k, 1))
    times = timed_steps(lambda: venv.step(action), args.steps, device)
    backend = venv.batch.backend
    venv.close()
    step_s = statistics.median(times)
    return {"step_s": step_s, "steps_per_s": k / step_s, "reset_s": reset_s, "backend": backend, "raw": times}


def measure_sequential(task: str, k: int, kw: dict, args, device: torch.device) -> dict:
    r = min(k, args.seq_envs)
    envs = [PruningEnv(task, **kw) for _ in range(r)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    action = envs[0].encode_action(args.prune_ratio)

    def step():
        for e in envs:
            e.step(action)

    times = timed_steps(step, args.steps, device)
    for e in envs:
        e.close()
    step_s = statistics.median(times)
    return {"envs_timed": r, "step_s_per_env": step_s / r, "steps_per_s": r / step_s, "raw": times}


def _worker_env(task: str, kw: dict, threads: int):
    def make():
        torch.set_num_threads(threads)
        return PruningEnv(task, **kw)

    return make


def measure_subproc(task: str, kw: dict, args) -> dict:
    n = 2
    vec = SubprocVecEnv([_worker_env(task, kw, args.threads) for _ in range(n)], start_method="forkserver")
    try:
        vec.seed(0)
        vec.reset()
        action = np.tile(vec.env_method("encode_action", args.prune_ratio, indices=[0])[0], (n, 1))
        times = timed_steps(lambda: vec.step(action), args.steps, torch.device("cpu"))  # step() waits for workers
    finally:
        vec.close()
    step_s = statistics.median(times)
    return {"workers": n, "step_s": step_s, "steps_per_s": n / step_s, "raw": times}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Env steps per second, {m['device']} ({m.get('gpu', m['cpu'])}), {m['torch_threads']} torch thread(s) "
        f"per process; float path {m['float_path']}; torch {m['torch']}, gymnasium {m['gymnasium']}, "
        f"SB3 {m['stable_baselines3']}; load "
        f"average before {report['load_average_before'][0]:.2f}, after {report['load_average_after'][0]:.2f}.",
        "",
        "| task | K | batched steps/s | sequential steps/s | batched / sequential | SubprocVecEnv (2) steps/s "
        "| batched / SubprocVecEnv |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in report["tasks"]:
        sub = task["subproc"]["steps_per_s"]
        for row in task["rows"]:
            b, s = row["batched"]["steps_per_s"], row["sequential"]["steps_per_s"]
            lines.append(
                f"| {task['task']} | {row['K']} | {b:,.2f} | {s:,.2f} | {b / s:.2f}x | {sub:,.2f} | {b / sub:.2f}x |"
            )
    return "\n".join(lines) + (
        "\n\nA step: one epoch of one sub-env with its plan, validation and observation "
        "(median of --steps after a warm-up); sequential: R = min(K, --seq-envs) PruningEnvs "
        "stepped one after another in one process.\n"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["synthetic-mlp", "fashion_mnist-mlp"])
    p.add_argument("--k", nargs="+", type=int, default=[1, 4, 16, 64])
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    p.add_argument("--seq-envs", type=int, default=8, help="sequential envs actually stepped (their rate is K's)")
    p.add_argument("--prune-ratio", type=float, default=0.3)
    p.add_argument("--train-size", type=int, default=None, help="subsample the training sets (default: all)")
    p.add_argument("--epochs", type=int, default=None, help="episode length (default: the task's; > --steps)")
    p.add_argument("--backend", default="auto", choices=["auto", "bmm", "func"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument("--no-subproc", action="store_true", help="skip the SubprocVecEnv baseline")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: stdout only)")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown table output")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(device, args.threads),
        "load_average_before": list(os.getloadavg()),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "tasks": [],
    }
    for task in args.tasks:
        kw = env_kwargs(args, task)
        epochs = PruningEnv(task, **kw).epochs
        if epochs <= args.steps:
            raise SystemExit(
                f"--steps {args.steps} needs episodes longer than {args.steps} epochs (task {task!r} has "
                f"{epochs}; pass --epochs)"
            )
        entry = {"task": task, "env_kwargs": kw, "rows": []}
        entry["subproc"] = measure_subproc(task, kw, args) if not args.no_subproc else {"steps_per_s": float("nan")}
        for k in args.k:
            row = {
                "K": k,
                "sequential": measure_sequential(task, k, kw, args, device),
                "batched": measure_batched(task, k, kw, args, device),
            }
            row["speedup"] = row["batched"]["steps_per_s"] / row["sequential"]["steps_per_s"]
            entry["rows"].append(row)
            print(
                f"{task} K={k}: batched {row['batched']['steps_per_s']:.2f} steps/s, sequential "
                f"{row['sequential']['steps_per_s']:.2f} ({row['speedup']:.2f}x), subproc(2) "
                f"{entry['subproc']['steps_per_s']:.2f}",
                flush=True,
            )
        report["tasks"].append(entry)
    report["load_average_after"] = list(os.getloadavg())
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
