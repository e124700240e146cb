"""Benchmark every fixed policy at its published defaults on one env (default ``prunegym/FashionMNIST-CNN-v0``).

For each (policy, seed): one env episode driven by ``make_policy(name, env)``; records the final test
accuracy, the claimed prune ratio (mean over epochs of the plan's ``claimed_prune_ratio``: what the method
says it prunes, 0 on epochs that prune nothing), the realised mean kept fraction (samples reaching the loss /
N, averaged over epochs), the total training compute as a fraction of the full-data run (every pass: model
forward and backward, scoring passes, an in-batch selector's own FLOPs), the selector's and the scoring
passes' shares of that compute, the training wall-clock (engine-measured) and the episode's wall-clock, and
the model's shallow share of a training step's FLOPs (what PFB still pays for blocked rows). Results go to
``--out`` (JSON, rewritten atomically after every run) and a Markdown table beside it (``.md``); (policy,
seed) pairs already in the JSON are skipped, so an interrupted run resumes.

Data: ``$PRUNEGYM_DATA`` (torchvision layout, ``FashionMNIST/raw/*.gz``). Examples (BENCHMARKS.md)::

    PRUNEGYM_DATA=... python benchmarks/baselines.py --train-size 10000 --val-size 2000 --threads 1 \\
        --out benchmarks/results/baselines_cnn_cpu.json
    PRUNEGYM_DATA=... python benchmarks/baselines.py --env prunegym/FashionMNIST-MLP-v0 --threads 1 \\
        --out benchmarks/results/baselines_mlp_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import gymnasium
import torch

import prunegym.envs  # noqa: F401  (registers the prunegym/ ids)
from prunegym.baselines import POLICIES, make_policy, policy_pruner
from prunegym.envs import ENV_IDS
from prunegym.training import resolve_device, runtime
from prunegym.training.io import write_text_atomic

DEFAULT_ENV = "prunegym/FashionMNIST-CNN-v0"
DEFAULT_POLICIES = tuple(n for n, c in POLICIES.items() if not c.requires_budget)  # all ten
SCHEMA = 2  # results of schema 1 (before claimed ratios and selector shares) are not resumed


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default=DEFAULT_ENV, choices=sorted(ENV_IDS), help=f"env id (default {DEFAULT_ENV})")
    ap.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="training samples (default: the env's whole training set after the validation split)",
    )
    ap.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="validation samples carved from the train pool (default: the env's, 5000 on Fashion-MNIST)",
    )
    ap.add_argument(
        "--eval-batch-size",
        type=int,
        default=256,
        help="evaluation batch (no effect on training; 256 evaluates faster than 1024 on a CPU)",
    )
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=str, default="0,1,2", help="comma-separated run seeds")
    ap.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1 or auto")
    ap.add_argument(
        "--policies", type=str, default=",".join(DEFAULT_POLICIES), help="comma-separated names (default: all ten)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; 1 is fastest on a loaded shared CPU)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/baselines.json"))
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in args.policies if p not in POLICIES]
    if bad:
        ap.error(f"unknown policies {bad}; allowed: {', '.join(POLICIES)}")
    return args


def env_kwargs(args: argparse.Namespace) -> dict:
    kw = {"epochs": args.epochs, "device": args.device, "eval_batch_size": args.eval_batch_size}
    if args.train_size is not None:
        kw["train_size"] = args.train_size
    if args.val_size is not None:
        kw["val_size"] = args.val_size
    return kw


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict:
    """One episode of policy ``name`` at its defaults; returns its metrics."""
    env = gymnasium.make(args.env, pruner=policy_pruner(name), record_wall_time=True, **env_kwargs(args))
    policy = make_policy(name, env)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    kept, ratios, claimed, train_wall, done, info = [], [], [], 0.0, False, {}
    while not done:
        action, _ = policy.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        kept.append(info["kept_fraction"])
        ratios.append(info["prune_ratio"])
        claimed.append(info["claimed_prune_ratio"])
        train_wall += info["wall_time"]
        done = term or trunc
    run = env.unwrapped.run
    by_category = run.meter.total_by_category
    full = run.meter.full_run_flops
    out = {
        "policy": name,
        "seed": seed,
        "hparams": policy.hparams,
        "test_accuracy": info["test_accuracy"],
        "val_accuracy": info["val_accuracy"],
        "claimed_prune_ratio": sum(claimed) / len(claimed),
        "mean_kept_fraction": sum(kept) / len(kept),
        "compute_fraction": info["compute_fraction_total"],
        "selector_compute_fraction": by_category["selector"] / full,
        "scoring_compute_fraction": by_category["scoring_forward"] / full,
        "kept_fraction_per_epoch": kept,
        "prune_ratio_per_epoch": ratios,
        "claimed_prune_ratio_per_epoch": claimed,
        "train_wall_s": train_wall,
        "episode_wall_s": time.perf_counter() - start,
        "num_train": run.num_train,
        "num_val": int(run.data.y_val.numel()),
        "num_test": int(run.data.y_test.numel()),
        "shallow_share": run.meter.flops.shallow_share,
        "error": info.get("error"),
    }
    env.close()
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def markdown(results: dict, policies: list[str]) -> str:
    cfg = results["config"]
    runs_all = results["runs"]
    sizes = (
        (
            f"{runs_all[0]['num_train']:,} training, {runs_all[0]['num_val']:,} validation and "
            f"{runs_all[0]['num_test']:,} test samples"
        )
        if runs_all
        else "no runs yet"
    )
    lines = [
        f"Fixed policies at their defaults on `{cfg['env_id']}`: {sizes}, "
        f"{cfg['epochs']} epochs, device {cfg['device']}, seeds {cfg['seeds']}. Test accuracy: mean ± std "
        "over seeds; claimed: the plans' claimed prune ratio, mean over epochs; kept: samples reaching the loss / "
        "N, mean over epochs; compute: training FLOPs of every pass (model, scoring, selector) / full-data run; "
        "selector and scoring: their shares of that compute; wall-clock: training seconds per run "
        "(engine-measured), mean.",
        "",
        "| policy | seeds | test accuracy (%) | claimed prune ratio | mean kept fraction | compute fraction "
        "| selector share | scoring share | train wall-clock (s) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in policies:
        runs = [r for r in runs_all if r["policy"] == name]
        if not runs:
            continue
        acc_m, acc_s = mean_std([100 * r["test_accuracy"] for r in runs])
        claim_m, _ = mean_std([r["claimed_prune_ratio"] for r in runs])
        comp_m, _ = mean_std([r["compute_fraction"] for r in runs])
        kept_m, _ = mean_std([r["mean_kept_fraction"] for r in runs])
        sel_m, _ = mean_std([r["selector_compute_fraction"] / r["compute_fraction"] for r in runs])
        score_m, _ = mean_std([r["scoring_compute_fraction"] / r["compute_fraction"] for r in runs])
        wall_m, _ = mean_std([r["train_wall_s"] for r in runs])
        std = "" if math.isnan(acc_s) else f" ± {acc_s:.2f}"
        note = f"shallow share of FLOPs {runs[0]['shallow_share']:.3f}" if name == "pfb" else ""
        if any(r.get("error") for r in runs):
            note = (note + "; " if note else "") + "diverged in some seed"
        lines.append(
            f"| {name} | {len(runs)} | {acc_m:.2f}{std} | {claim_m:.3f} | {kept_m:.3f} | {comp_m:.3f} "
            f"| {sel_m:.3f} | {score_m:.3f} | {wall_m:.0f} | {note} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {
        "schema": SCHEMA,
        "env_id": args.env,
        "train_size": args.train_size,
        "val_size": args.val_size,
        "epochs": args.epochs,
        "device": args.device,
        "eval_batch_size": args.eval_batch_size,
    }
    results = {"config": {**config, "seeds": args.seeds}, "runs": []}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        old_cfg = {k: old["config"].get(k) for k in config}
        if old_cfg != config:
            sys.exit(f"{args.out} holds results of another configuration ({old_cfg}); use another --out")
        results["runs"] = old["runs"]
        results["config"]["seeds"] = sorted(set(old["config"].get("seeds", [])) | set(args.seeds))
    done = {(r["policy"], r["seed"]) for r in results["runs"]}
    md_path = args.out.with_suffix(".md")
    for seed in args.seeds:
        for name in args.policies:
            if (name, seed) in done:
                print(f"skip {name} seed {seed} (in {args.out})", flush=True)
                continue
            r = {**run_one(name, seed, args), "runtime": runtime(resolve_device(args.device))}
            results["runs"].append(r)
            write_text_atomic(args.out, json.dumps(results, indent=1, sort_keys=True))
            write_text_atomic(md_path, markdown(results, args.policies))
            print(
                f"{name:16s} seed {seed}: test {r['test_accuracy']:.4f} claimed {r['claimed_prune_ratio']:.3f} "
                f"kept {r['mean_kept_fraction']:.3f} compute {r['compute_fraction']:.3f} (selector "
                f"{r['selector_compute_fraction']:.3f}, scoring {r['scoring_compute_fraction']:.3f}) train "
                f"{r['train_wall_s']:.0f}s episode {r['episode_wall_s']:.0f}s",
                flush=True,
            )
    table = markdown(results, args.policies)
    write_text_atomic(md_path, table)
    print(table)
    return results


if __name__ == "__main__":
    main()
