"""Realised saving of a half epoch (prune ratio 0.5) on three data paths, Fashion-MNIST MLP, one torch thread.

The ideal saving of training on a random half of the samples is 0.5 of the epoch's time; the realised share of
it is ``(1 - t_half / t_full) / 0.5`` (1.0 = all of it). Timed, interleaved, after a warm-up epoch each:

  (a) resident: the engine on device-resident tensors, ``TrainingRun.run_epoch`` on the full plan and on a
      random half (the path the presets use);
  (b) streaming: the engine on the same samples registered as a map-style ``Dataset`` (item by item, as a
      user's dataset is), fed through its ``DataLoader`` with ``--workers`` persistent workers (the plan's
      indices as the batch sampler);
  (c) plain: a plain PyTorch loop over a ``DataLoader`` of the same ``Dataset`` with the same workers, on a
      random permutation and on a random half of it (what a user's own loop costs);
  (d) sampler: the loop of (c) with ``PruningSampler("uniform", prune_ratio=0.5)`` as its sampler (its
      realised saving is against (c)'s full epoch).

Model, batch size and optimizer are the ``prunegym/FashionMNIST-MLP-v0`` recipe (MLP 784-256-10, batch 256,
SGD with Nesterov momentum); the learning rate is constant (the schedule does not change the time).

    PRUNEGYM_DATA=/path/to/data python benchmarks/streaming.py --repeats 5 --out benchmarks/results/streaming_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from prunegym.baselines import PruningSampler
from prunegym.envs import task_config
from prunegym.training import EpochPlan, TrainingRun, register_dataset
from prunegym.training.provenance import cpu_name, machine


class ItemDataset(Dataset):
    """``(x[i], y[i])`` one sample at a time, as a user's map-style dataset returns them."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class ListSampler(torch.utils.data.Sampler):
    """Yields ``indices`` (set before each epoch)."""

    def __init__(self):
        self.indices: list[int] = []

    def __iter__(self):
        return iter(list(self.indices))

    def __len__(self) -> int:
        return len(self.indices)


def engine_epoch(run: TrainingRun, fraction: float) -> float:
    indices = run.full_plan().indices
    plan = EpochPlan(indices[: round(fraction * indices.numel())])
    t0 = time.perf_counter()
    run.run_epoch(plan)
    return time.perf_counter() - t0


def loop_epoch(model, optimizer, loader) -> float:
    t0 = time.perf_counter()
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def sampler_epoch(model, optimizer, loader, sampler: PruningSampler, epoch: int) -> float:
    t0 = time.perf_counter()
    sampler.set_epoch(epoch)
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y, reduction="none")
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        optimizer.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-size", type=int, default=None, help="training samples (default all 55,000)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds after the warm-up")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of (b), (c), (d)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if not os.environ.get("PRUNEGYM_DATA"):
        print("PRUNEGYM_DATA is not set: point it at a folder holding FashionMNIST/raw/*.gz", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(args.threads)
    epochs = 2 + 2 * args.repeats
    cfg = task_config("fashion_mnist-mlp").replace(
        train_size=args.train_size, epochs=epochs, seed=args.seed, lr_schedule="constant", test_size=1000
    )
    resident = TrainingRun(cfg)
    d = resident.data
    register_dataset(
        "bench-fmnist-items",
        {
            "train": ItemDataset(d.x_train, d.y_train),
            "val": ItemDataset(d.x_val, d.y_val),
            "test": ItemDataset(d.x_test, d.y_test),
        },
        num_classes=d.num_classes,
    )
    streaming = TrainingRun(
        cfg.replace(dataset="bench-fmnist-items", num_workers=args.workers, train_size=None, test_size=None)
    )
    n = resident.num_train
    assert streaming.num_train == n

    plain_run = TrainingRun(cfg)  # its model and optimizer for the plain loops
    items = ItemDataset(d.x_train, d.y_train)
    perm_gen = torch.Generator().manual_seed(args.seed)
    lists = ListSampler()
    loader = DataLoader(
        items, batch_size=cfg.batch_size, sampler=lists, num_workers=args.workers, persistent_workers=args.workers > 0
    )
    pruning = PruningSampler("uniform", num_samples=n, epochs=epochs, seed=args.seed, prune_ratio=0.5, warmup_epochs=0)
    pruned_loader = DataLoader(
        items, batch_size=cfg.batch_size, sampler=pruning, num_workers=args.workers, persistent_workers=args.workers > 0
    )
    sampler_run = TrainingRun(cfg)

    def plain(fraction: float) -> float:
        perm = torch.randperm(n, generator=perm_gen)
        lists.indices = perm[: round(fraction * n)].tolist()
        return loop_epoch(plain_run.model, plain_run.optimizer, loader)

    print(
        f"machine: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); Fashion-MNIST MLP, {n} samples, batch {cfg.batch_size}, "
        f"{args.workers} DataLoader workers, {args.repeats} rounds",
        flush=True,
    )
    engine_epoch(resident, 1.0), engine_epoch(streaming, 1.0), plain(1.0)  # warm-up (workers start here)
    sampler_epoch(sampler_run.model, sampler_run.optimizer, pruned_loader, pruning, 0)
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "resident_full",
            "resident_half",
            "streaming_full",
            "streaming_half",
            "plain_full",
            "plain_half",
            "sampler",
        )
    }
    for r in range(args.repeats):
        times["resident_full"].append(engine_epoch(resident, 1.0))
        times["resident_half"].append(engine_epoch(resident, 0.5))
        times["streaming_full"].append(engine_epoch(streaming, 1.0))
        times["streaming_half"].append(engine_epoch(streaming, 0.5))
        times["plain_full"].append(plain(1.0))
        times["plain_half"].append(plain(0.5))
        times["sampler"].append(sampler_epoch(sampler_run.model, sampler_run.optimizer, pruned_loader, pruning, r + 1))
        print("  round " + str(r + 1) + ": " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    share = {
        "resident": (1 - med["resident_half"] / med["resident_full"]) / 0.5,
        "streaming": (1 - med["streaming_half"] / med["streaming_full"]) / 0.5,
        "plain": (1 - med["plain_half"] / med["plain_full"]) / 0.5,
        "sampler": (1 - med["sampler"] / med["plain_full"]) / 0.5,
    }
    print("| path | full epoch (s) | half epoch (s) | realised share of the ideal 0.5 saving |")
    print("|---|---|---|---|")
    for label, key, full, half in (
        ("(a) resident", "resident", "resident_full", "resident_half"),
        ("(b) streaming", "streaming", "streaming_full", "streaming_half"),
        ("(c) plain DataLoader loop", "plain", "plain_full", "plain_half"),
        ("(d) PruningSampler in (c)", "sampler", "plain_full", "sampler"),
    ):
        print(f"| {label} | {med[full]:.3f} | {med[half]:.3f} | {share[key]:.3f} |")
    print(
        f"streaming / resident full-epoch time: {med['streaming_full'] / med['resident_full']:.2f}x; "
        f"streaming / plain DataLoader loop: {med['streaming_full'] / med['plain_full']:.2f}x"
    )
    load = os.getloadavg()[0]
    results = {
        "benchmark": "streaming",
        "machine": machine(),
        "train_size": n,
        "batch_size": cfg.batch_size,
        "workers": args.workers,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "realised_share_of_ideal_saving": share,
        "sampler_kept_fractions": pruning.kept_fractions,
        "load_average_1min_after": load,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
