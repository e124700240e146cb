"""One pruned training run over several processes (``torch.distributed``), launched with ``torchrun``.

    torchrun --nproc_per_node 2 examples/ddp_train.py --pruner infobatch --epochs 4 --out /tmp/ddp

Every rank builds the same :class:`~prunegym.training.TrainingRun` from the same seed and the same pruner,
so every rank makes the same keep decision without communication; each global batch is split across ranks,
gradients are summed, and per-sample losses are all-gathered into identical score tables. The backend is
``gloo`` on CPU and ``nccl`` with ``--device cuda`` (each rank takes GPU ``LOCAL_RANK``). Each rank writes
``rank<r>.pt`` (score table, per-epoch plans and trained indices, final weights) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch
import torch.distributed as dist

from prunegym.baselines import make_pruner
from prunegym.envs import task_config
from prunegym.training import TrainingRun


def train(config, pruner_name: str, prune_ratio: float = 0.5, process_group=None, log=None) -> dict:
    """Run ``config`` to the end under ``pruner_name`` at a constant ``prune_ratio``; returns what the run
    did: ``plans`` and ``trained`` (per epoch, int64 indices), the score table, the final weights, the FLOPs
    and the pass counts (summed over ranks). ``log``: called with one line per epoch and a last one with the
    validation accuracy (rank 0 prints them in :func:`main`)."""
    run = TrainingRun(config, process_group=process_group)
    pruner = make_pruner(pruner_name)
    pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
    plans, trained = [], []
    while not run.done:
        plan = pruner.plan(run.epoch, run.scores, {"prune_ratio": prune_ratio})
        result = run.run_epoch(plan)
        pruner.update(result, run.scores)
        plans.append(plan.indices.cpu())
        trained.append(result.indices.cpu())
        if log is not None:
            log(
                f"epoch {result.epoch}: trained {result.indices.numel()} of {run.num_train} samples "
                f"({result.kept_fraction:.0%}), train loss {result.train_loss:.4f}, compute so far "
                f"{run.meter.total_flops / run.meter.full_run_flops:.3f} of the full-data run"
            )
    if log is not None:
        val = run.evaluate("val")
        log(f"done: validation accuracy {val.accuracy:.4f}, loss {val.loss:.4f}")
    return {
        "plans": plans,
        "trained": trained,
        "scores": {k: v.cpu() for k, v in run.scores.state_dict().items()},
        "state": {k: v.cpu() for k, v in run.model.state_dict().items()},
        "flops": run.meter.total_flops,
        "passes": dataclasses.asdict(run.meter.total_passes),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="synthetic-mlp")
    ap.add_argument("--pruner", default="infobatch")
    ap.add_argument("--prune-ratio", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    device = args.device
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        config = task_config(args.task).replace(
            epochs=args.epochs, train_size=args.train_size, seed=args.seed, device=device
        )
        rank = dist.get_rank()
        log = (lambda line: print(f"[rank 0 of {dist.get_world_size()}] {line}", flush=True)) if rank == 0 else None
        out = train(config, args.pruner, args.prune_ratio, process_group="default", log=log)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        torch.save(out, Path(args.out) / f"rank{rank}.pt")
        if log is not None:
            log(f"wrote {args.out}/rank<r>.pt (score table, plans, trained indices, final weights) for every rank")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
