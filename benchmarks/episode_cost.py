"""Wall-clock cost of one episode of a registered id, on one torch thread: ``--episodes`` whole episodes played
one after the other (``gymnasium.make``), and the same number as one batched ``PruningVectorEnv`` of K sub-envs
(``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``; skipped where the vector env refuses the
id). Every episode draws its instance (noise, imbalance, budget) from the id's ranges; the action is the id's
pruner's (``learned``) neutral action at prune ratio ``1 - budget`` (at most the env's maximum; what a
budget-spending policy asks for), encoded by the env. Data loading is not timed: ``--warmup`` episodes are
played first (sequential), the batched env's first reset loads its data. Output: JSON (versions, load average
before and after, each episode's seconds) and one Markdown line per id.

    OMP_NUM_THREADS=1 python benchmarks/episode_cost.py --env prunegym/FashionMNIST-Noisy-v0 \\
        prunegym/FashionMNIST-LT-v0 --episodes 4 --k 4 --out benchmarks/results/episode_cost.json

``PRUNEGYM_DATA`` must hold the datasets the ids read.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import prunegym.envs  # noqa: E402,F401  (registers the ids)
from prunegym.training.provenance import runtime  # noqa: E402


def _action(env, budget: float) -> np.ndarray:
    """The ``learned`` pruner's neutral action at prune ratio ``1 - budget`` (at most the env's maximum), as the
    env or vector env ``env`` encodes it."""
    return env.encode_action(prune_ratio=min(1.0 - budget, env.codec.max_prune_ratio))


def sequential(env_id: str, episodes: int, warmup: int, seed: int) -> list[float]:
    """Seconds per episode of ``episodes`` episodes of one env, after ``warmup`` untimed ones."""
    env, times = gym.make(env_id), []
    for e in range(warmup + episodes):
        t0 = time.perf_counter()
        _, info = env.reset(seed=seed + e)
        budget, done = float(info["compute_budget"]), False
        while not done:
            _, _, term, trunc, _ = env.step(_action(env.unwrapped, budget))
            done = term or trunc
        if e >= warmup:
            times.append(time.perf_counter() - t0)
    env.close()
    return times


def batched(env_id: str, k: int, seed: int) -> float | None:
    """Seconds per episode of K episodes played as one batch (None where the vector env refuses the id)."""
    venv = gym.make_vec(env_id, num_envs=k, vectorization_mode="vector_entry_point")
    try:
        _, info = venv.reset(seed=seed)  # untimed: loads the data
    except ValueError as err:  # the batched engine refuses the id (e.g. a long tail's sizes differ)
        print(f"{env_id}: batched skipped: {err}")
        venv.close()
        return None
    t0 = time.perf_counter()
    _, info = venv.reset(seed=seed + 1000)
    budgets = [float(b) for b in info["compute_budget"]]
    done = np.zeros(k, dtype=bool)
    while not done.all():
        acts = np.stack([_action(venv, b) for b in budgets])
        _, _, term, trunc, _ = venv.step(acts)
        done |= term | trunc
    venv.close()
    return (time.perf_counter() - t0) / k


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", nargs="+", required=True, help="registered ids")
    p.add_argument("--episodes", type=int, default=4, help="timed episodes per id (sequential)")
    p.add_argument("--warmup", type=int, default=1, help="untimed episodes first (data loading)")
    p.add_argument("--k", type=int, default=4, help="sub-envs of the batched run")
    p.add_argument("--seed", type=int, default=90000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    load = [os.getloadavg()]
    results = {}
    for env_id in args.env:
        seq = sequential(env_id, args.episodes, args.warmup, args.seed)
        bat = batched(env_id, args.k, args.seed)
        results[env_id] = {"sequential_s": seq, "sequential_median_s": statistics.median(seq), "batched_s": bat}
        line = f"| `{env_id}` | {statistics.median(seq):.2f} s | "
        line += f"{bat:.2f} s (K={args.k})" if bat is not None else "refused (long tail)"
        print(line + " |", flush=True)
    load.append(os.getloadavg())
    doc = {"runtime": runtime("cpu", 1), "args": {k: str(v) for k, v in vars(args).items()}, "load": load, **results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
