"""Throughput of the batched engine (:class:`BatchedTrainingRun`) against K sequential :class:`TrainingRun`s.

For each task and each K, in one process and interleaved (sequential, bmm, func, sequential, ...) after one
warm-up epoch each, it times what one env step costs the engine: the plans, one training epoch of every run,
and the validation pass. ``samples/s`` counts training samples of all K runs; ``run-epochs/s`` = K / time.
The sequential baseline trains R = min(K, --seq-runs) real runs (each with its own data split, as
``PruningEnv`` does) and scales their time by K / R: the runs are identical in cost, and the R runs keep
more of their working set in cache than K would, so the scaling favours the baseline.

Plans: every run keeps ``ceil((1 - r) N)`` samples drawn from its own shuffle stream (``--prune-ratio r``,
default 0: the full data). Output: JSON (machine, torch version, load average before and after, every
timing) and a Markdown table.

    python benchmarks/batched_engine.py --tasks synthetic-mlp fashion_mnist-mlp --k 1 4 16 64 \\
        --train-size 55000 --repeats 3 --out benchmarks/results/batched_engine.json
    python benchmarks/batched_engine.py --device cuda ...   # the same on a GPU

``PRUNEGYM_DATA`` must hold ``FashionMNIST/raw/*.gz`` for the Fashion-MNIST task.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from prunegym.envs.tasks import task_config
from prunegym.training import EpochPlan, RunConfig, TrainingRun, resolve_device
from prunegym.training.batched_run import BatchedTrainingRun
from prunegym.training.provenance import machine

BACKENDS = ("bmm", "func")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def kept_plan(full: EpochPlan, prune_ratio: float) -> EpochPlan:
    """The first ``ceil((1 - r) N)`` indices of a run's shuffled full plan."""
    n = int(full.indices.numel())
    return EpochPlan(full.indices[: min(n, max(0, math.ceil((1.0 - prune_ratio) * n - 1e-9)))])


def step_sequential(runs: list[TrainingRun], prune_ratio: float) -> tuple[float, float]:
    """Seconds of one epoch of every run, then of their validation passes."""
    dev = runs[0].device
    sync(dev)
    t0 = time.perf_counter()
    for r in runs:
        r.run_epoch(kept_plan(r.full_plan(), prune_ratio))
    sync(dev)
    t1 = time.perf_counter()
    for r in runs:
        r.evaluate("val")
    sync(dev)
    return t1 - t0, time.perf_counter() - t1


def step_batched(batch: BatchedTrainingRun, prune_ratio: float) -> tuple[float, float]:
    dev = batch.device
    sync(dev)
    t0 = time.perf_counter()
    batch.run_epoch([kept_plan(batch.full_plan(k), prune_ratio) for k in range(batch.num_runs)])
    sync(dev)
    t1 = time.perf_counter()
    batch.evaluate("val")
    sync(dev)
    return t1 - t0, time.perf_counter() - t1


def measure(cfg: RunConfig, k: int, args) -> dict:
    seeds = list(range(k))
    r_seq = min(k, args.seq_runs)
    runs = [TrainingRun(cfg.replace(seed=s)) for s in seeds[:r_seq]]
    batches: dict[str, BatchedTrainingRun] = {}
    for b in args.backends:  # the back ends share one data pool
        data = next(iter(batches.values())).data if batches else None
        batches[b] = BatchedTrainingRun(cfg, seeds, backend=b, data=data)
    n = runs[0].num_train
    times: dict[str, list[tuple[float, float]]] = {"sequential": [], **{b: [] for b in batches}}
    for rep in range(args.repeats + 1):  # the first round is the warm-up
        t = step_sequential(runs, args.prune_ratio)
        if rep:
            times["sequential"].append((t[0] * k / r_seq, t[1] * k / r_seq))
        for b, batch in batches.items():
            t = step_batched(batch, args.prune_ratio)
            if rep:
                times[b].append(t)
    samples = k * min(n, max(0, math.ceil((1.0 - args.prune_ratio) * n - 1e-9)))
    out = {"K": k, "num_train": n, "samples_per_epoch": samples, "sequential_runs_timed": r_seq}
    seq_total = statistics.median(a + b for a, b in times["sequential"])
    for name, ts in times.items():
        train = statistics.median(a for a, _ in ts)
        total = statistics.median(a + b for a, b in ts)
        out[name] = {
            "train_s": train,
            "eval_s": statistics.median(b for _, b in ts),
            "step_s": total,
            "train_samples_per_s": samples / train,
            "run_epochs_per_s": k / total,
            "speedup": seq_total / total,
            "raw": ts,
        }
    return out


def markdown(results: list[dict], backends: list[str]) -> str:
    head = ["task", "K", "sequential samples/s"] + [f"{b} samples/s (speedup)" for b in backends]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["task"], str(r["K"]), f"{r['sequential']['train_samples_per_s']:,.0f}"]
        cells += [f"{r[b]['train_samples_per_s']:,.0f} ({r[b]['speedup']:.2f}x)" for b in backends]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n".join(lines) + "\n\nSpeedup: sequential / batched wall-clock of one env step's engine work "
        "(plans, one epoch of all K runs, validation); samples/s: training only.\n"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["synthetic-mlp", "fashion_mnist-mlp"])
    p.add_argument("--k", nargs="+", type=int, default=[1, 4, 16, 64])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--train-size", type=int, default=None, help="subsample real training sets (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration (after one warm-up)")
    p.add_argument("--seq-runs", type=int, default=8, help="sequential runs actually timed (scaled to K)")
    p.add_argument("--prune-ratio", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: stdout only)")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown table output")
    args = p.parse_args(argv)
    if not 0.0 <= args.prune_ratio < 1.0:
        p.error(f"--prune-ratio={args.prune_ratio!r} must be in [0, 1)")
    if min(args.k) < 1 or args.repeats < 1 or args.seq_runs < 1:
        p.error("--k, --repeats and --seq-runs must be >= 1")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report = {
        "machine": machine(device),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_before": os.getloadavg(),
        "results": [],
    }
    started = time.perf_counter()
    for task in args.tasks:
        epochs = args.repeats + 2
        overrides = dict(device=str(device), epochs=epochs)
        if args.train_size is not None and task_config(task).dataset != "synthetic":
            overrides["train_size"] = args.train_size
        cfg = task_config(task).replace(**overrides)
        for k in args.k:
            t = time.perf_counter()
            res = {"task": task, **measure(cfg, k, args)}
            report["results"].append(res)
            speed = ", ".join(f"{b} {res[b]['speedup']:.2f}x" for b in args.backends)
            print(
                f"{task} K={k}: sequential {res['sequential']['train_samples_per_s']:,.0f} samples/s; {speed} "
                f"({time.perf_counter() - t:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    report["load_average_after"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - started
    table = markdown(report["results"], args.backends)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
