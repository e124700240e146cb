"""``PruningSampler`` in a plain DDP loop (``torch.nn.parallel.DistributedDataParallel``, a ``DataLoader`` per
rank), beside the engine's own DDP run of the same pruner and seed; launched with ``torchrun``:

    torchrun --nproc_per_node 2 examples/sampler_ddp.py --epochs 3 --out /tmp/sampler_ddp

Every rank builds the sampler with the same seed; it yields the rank's share of the same plan and gathers
every rank's losses when the next epoch starts, so all ranks hold one score table and make one decision.
Each rank's batch is ``batch_size / world_size`` rows; its loss is ``world_size * sum(w_i * loss_i) / n`` with
``n`` the rows of the global batch that carry a weight (padding copies have weight 0), which DDP's gradient
average turns into the engine's ``sum(w_i * loss_i) / n`` over the global batch. Each rank writes
``rank<r>.pt``: the plans and score table of the sampler run (``sampler``) and of the engine run (``engine``).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from prunegym.baselines import IndexedDataset, PruningSampler
from prunegym.envs import task_config
from prunegym.training import TrainingRun


def train_with_sampler(config, prune_ratio: float = 0.5, num_workers: int = 0) -> dict:
    """``config`` trained by a user's DDP loop with a ``PruningSampler("infobatch")`` at a constant ratio."""
    world = dist.get_world_size()
    run = TrainingRun(config)  # the seed's model, optimizer and data (single-process objects)
    model = DistributedDataParallel(run.model)
    sampler = PruningSampler(
        "infobatch",
        num_samples=run.num_train,
        epochs=config.epochs,
        seed=config.seed,
        prune_ratio=prune_ratio,
        delta=1.0,
    )  # delta 1: no annealing, as the engine run
    data = IndexedDataset(TensorDataset(run.data.x_train, run.data.y_train))
    loader = DataLoader(data, batch_size=config.batch_size // world, sampler=sampler, num_workers=num_workers)
    plans = []
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        model.train()
        for x, y, idx in loader:
            w = sampler.weights(idx)
            logits = model(x)
            loss = F.cross_entropy(logits, y, reduction="none")
            rows = (w > 0).sum().reshape(1).float()
            dist.all_reduce(rows)
            run.optimizer.zero_grad()
            ((w * loss).sum() * world / rows.clamp_min(1)).backward()
            run.optimizer.step()
            sampler.update(idx, loss.detach(), logits.detach().argmax(1) == y)
        plans.append(sampler.plan.indices.cpu())
    sampler.end_epoch()
    return {
        "plans": plans,
        "scores": {k: v.cpu() for k, v in sampler.scores.state_dict().items()},
        "state": {k: v.cpu() for k, v in run.model.state_dict().items()},
        "kept": sampler.kept_fractions,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--prune-ratio", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        config = task_config("synthetic-mlp").replace(epochs=args.epochs, seed=args.seed, lr_schedule="constant")
        spec = importlib.util.spec_from_file_location("ddp_train", Path(__file__).with_name("ddp_train.py"))
        ddp_train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ddp_train)
        out = {
            "sampler": train_with_sampler(config, args.prune_ratio, args.num_workers),
            "engine": ddp_train.train(config, "infobatch", args.prune_ratio, process_group="default"),
        }
        Path(args.out).mkdir(parents=True, exist_ok=True)
        torch.save(out, Path(args.out) / f"rank{dist.get_rank()}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
