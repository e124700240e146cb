"""The training run: a classifier advanced one epoch at a time under an :class:`EpochPlan`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .augment import random_crop_flip
from .config import RunConfig
from .data import DataSplits
from .distributed import DistContext
from .flops import measure_flops
from .meter import ComputeMeter
from .models import build_model
from .plan import EpochPlan, EpochResult, PassCounts, selector_flops
from .schedule import lr_at
from .scores import ScoreTable
from .seeding import torch_generator
from .streaming import StreamSplits, load_run_data

__all__ = ["EvalResult", "TrainingRun", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; a CUDA device without CUDA raises a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy (no label smoothing) and accuracy in [0, 1] over a split."""

    loss: float
    accuracy: float


class TrainingRun:
    """One classifier training run (model, optimizer, data, score table, compute meter).

    ``run_epoch(plan)`` trains one epoch on the plan's indices and updates the score table;
    ``evaluate("val" | "test")`` measures a split. ``splits`` may be passed to reuse loaded data.
    The random streams (``init``, ``shuffle``, ``augment``) derive from ``config.seed``.

    ``process_group``: train one run over several processes (``torch.distributed``; ``"default"`` for the
    group of ``init_process_group``). Every rank builds the same run from the same seed; each global batch is
    split across ranks, gradients are summed, and per-sample losses are all-gathered so every rank holds the
    same score table and makes the same pruning decision (see :mod:`prunegym.training.distributed`).
    """

    def __init__(self, config: RunConfig, splits: DataSplits | StreamSplits | None = None, process_group=None):
        self.config = config
        self.dist = DistContext.from_group(process_group)
        self.device = resolve_device(config.device)
        if splits is None:  # resident tensors, or a stream through a DataLoader (prunegym.training.streaming)
            splits = load_run_data(config, self.device)
        self.data = splits
        self.num_train = splits.num_train
        self.epochs = config.epochs
        self.epoch = 0  # epochs completed
        self.model = build_model(
            config.model,
            splits.input_shape,
            splits.num_classes,
            torch_generator(config.seed, "init"),
            split=config.model_split,
            device=self.device,
            **config.model_kwargs,
        )
        self.param_count = sum(p.numel() for p in self.model.parameters())
        params = self.model.parameters()
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=config.lr,
                momentum=config.momentum,
                nesterov=config.nesterov and config.momentum > 0,
                weight_decay=config.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scores = ScoreTable(self.num_train, self.device, config.ema_rate)
        self.meter = ComputeMeter(measure_flops(self.model, splits.input_shape), self.num_train, config.epochs)
        self._shuffle_gen = torch_generator(config.seed, "shuffle", self.device)
        self._augment_gen = torch_generator(config.seed, "augment", self.device)
        self._pending_scoring = 0
        self.lr = self._lr(0.0)

    # -- helpers -------------------------------------------------------------------------------------------
    def _lr(self, progress: float) -> float:
        c = self.config
        return lr_at(c.lr_schedule, progress, c.lr, pct_start=c.pct_start)

    def generator(self, stream: str) -> torch.Generator:
        """A fresh generator on the training device for ``stream``, derived from the run seed."""
        return torch_generator(self.config.seed, stream, self.device)

    def full_plan(self) -> EpochPlan:
        """All training samples in a seeded random order, weight 1."""
        return EpochPlan(torch.randperm(self.num_train, generator=self._shuffle_gen, device=self.device))

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    # -- scoring pass --------------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, indices: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[K]`` of ``indices`` under the current model (eval mode, no grad). The forward
        passes are charged to the next epoch as scoring compute."""
        idx = indices.to(self.device, torch.int64)
        self._pending_scoring += int(idx.numel())
        return self._eval_losses(idx)

    @torch.no_grad()
    def _eval_losses(self, idx: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Per-sample cross-entropy ``[K]`` of training samples ``idx`` (eval mode, no grad, batched)."""
        self.model.eval()
        out = []
        for x, y in self.data.index_batches(idx, self.config.eval_batch_size):
            out.append(F.cross_entropy(self.model(x), y, reduction="none", label_smoothing=label_smoothing))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    # -- one epoch -----------------------------------------------------------------------------------------
    def run_epoch(self, plan: EpochPlan) -> EpochResult:
        """Train one epoch on ``plan`` and update the score table.

        The loss of a batch is ``mean(weight_i * loss_i)`` over the rows that reach the loss. The learning
        rate follows progress ``(epoch + b / n_batches) / epochs``. Losses, correctness and indices stay on
        the device; the host syncs once, at the end, for the epoch's means. A plan's ``selector`` is charged
        its own FLOPs (``PassCounts.selector_flops``); its ``score_after`` samples are scored after the
        training (see :class:`EpochPlan`) and charged as ``scoring_forward`` in this epoch.
        """
        if self.done:
            raise RuntimeError(f"the run has completed its {self.epochs} epochs")
        plan.validate(self.num_train)
        cfg, dev, model = self.config, self.device, self.model
        idx = plan.indices.to(dev)
        k = int(idx.numel())
        weights = plan.weights.to(dev, torch.float32) if plan.weights is not None else None
        mix = plan.mixup
        if mix is not None:
            partner_all, lam_all = mix.partner.to(dev, torch.int64), mix.lam.to(dev, torch.float32)
        losses = torch.empty(k, device=dev)
        correct = torch.empty(k, dtype=torch.bool, device=dev)
        trained = torch.empty(k, dtype=torch.int64, device=dev)
        mixed = torch.zeros(k, dtype=torch.bool, device=dev)
        passes = PassCounts(scoring_forward=self._pending_scoring)
        self._pending_scoring = 0
        bs = cfg.batch_size
        n_batches = max(1, math.ceil(k / bs))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        model.train()
        offset = 0
        ddp = self.dist
        batches = self.data.train_batches(
            idx, partner_all if mix is not None else None, bs, ddp.shard if ddp is not None else None
        )
        for b in range(n_batches if k else 0):
            lr = self._lr((self.epoch + b / n_batches) / self.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            span = slice(b * bs, (b + 1) * bs)
            bi = idx[span]
            global_rows = int(bi.numel())
            bw = weights[span] if weights is not None else None
            if mix is not None:
                partner, lam = partner_all[span], lam_all[span]
            if ddp is not None:  # this rank's share of the global batch
                bi = ddp.shard(bi)
                bw = ddp.shard(bw) if bw is not None else None
                if mix is not None:
                    partner, lam = ddp.shard(partner), ddp.shard(lam)
            rows_in = int(bi.numel())
            x, y, x_partner, y2 = next(batches)  # the rows bi (and their mix-up partners) of the training set
            if mix is not None:
                x = lam.view(-1, *([1] * (x.ndim - 1))) * x + (1 - lam).view(-1, *([1] * (x.ndim - 1))) * x_partner
            if self.data.augment:
                x = random_crop_flip(x, self._augment_gen)
            h = model.shallow(x)
            if plan.selector is not None:
                rows = plan.selector(h.detach(), bi)
                passes.selector_flops += selector_flops(plan.selector, rows_in, int(rows.numel()), tuple(h.shape))
                h, y, bi = h[rows], y[rows], bi[rows]
                bw = bw[rows] if bw is not None else None
                if mix is not None:
                    lam, y2 = lam[rows], y2[rows]
            m = int(h.shape[0])
            passes.shallow_forward += rows_in
            # Rows reaching the loss in the whole (global) batch: the loss is their weighted mean.
            if ddp is None:
                denom = m
            elif plan.selector is None:
                denom = global_rows
            else:
                denom = ddp.sum_int(m, dev)
            if denom == 0:
                continue
            logits = model.deep(h)
            per_sample = F.cross_entropy(logits, y, reduction="none", label_smoothing=cfg.label_smoothing)
            if mix is not None:
                per_sample = lam * per_sample + (1 - lam) * F.cross_entropy(
                    logits, y2, reduction="none", label_smoothing=cfg.label_smoothing
                )
                mixed[offset : offset + m] = lam < 1
            weighted = per_sample * bw if bw is not None else per_sample
            loss = weighted.sum() / denom
            self.optimizer.zero_grad(set_to_none=ddp is None)
            loss.backward()
            if ddp is not None:
                ddp.all_reduce_grads(self.model.parameters())
            self.optimizer.step()
            passes.shallow_backward += rows_in
            passes.deep_forward += m
            passes.deep_backward += m
            losses[offset : offset + m] = per_sample.detach()
            correct[offset : offset + m] = logits.detach().argmax(1) == y
            trained[offset : offset + m] = bi
            offset += m
        losses, correct, trained, mixed = losses[:offset], correct[:offset], trained[:offset], mixed[:offset]
        if ddp is not None:  # every rank gets every rank's samples: identical score tables
            losses, trained = ddp.all_gather_varlen(losses), ddp.all_gather_varlen(trained)
            correct = ddp.all_gather_varlen(correct.to(torch.uint8)).bool()
            mixed = ddp.all_gather_varlen(mixed.to(torch.uint8)).bool()
            # Sum every rank's passes and selector FLOPs; scoring passes are replicated on every rank: count once.
            names = [f for f in PassCounts.__dataclass_fields__ if f != "scoring_forward"]
            counts = torch.tensor([float(getattr(passes, f)) for f in names], dtype=torch.float64, device=dev)
            torch.distributed.all_reduce(counts, group=ddp.group)
            summed = {f: (c if f == "selector_flops" else int(c)) for f, c in zip(names, counts.tolist())}
            passes = PassCounts(**summed, scoring_forward=passes.scoring_forward)
            offset = int(trained.numel())
        scored_idx = scored_losses = None
        if plan.score_after is not None:  # every rank scores the same samples (replicated): counted once
            scored_idx = plan.score_after.to(dev, torch.int64)
            scored_losses = self._eval_losses(scored_idx, cfg.label_smoothing)
            passes.scoring_forward += int(scored_idx.numel())
        self.lr = self._lr((self.epoch + 1) / self.epochs)
        if offset:
            stats = torch.stack([losses.mean(), correct.float().mean()]).tolist()  # the epoch's one host sync
        else:
            stats = [float("nan"), float("nan")]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - t0
        self.scores.update(trained, losses, correct, self.epoch, valid=~mixed if mix is not None else None)
        flops = self.meter.charge(passes)
        result = EpochResult(
            epoch=self.epoch,
            indices=trained,
            losses=losses,
            correct=correct,
            mixed=mixed,
            passes=passes,
            flops=flops,
            flops_fraction=flops / self.meter.full_epoch_flops,
            kept_fraction=offset / self.num_train,
            planned_fraction=k / self.num_train,
            claimed_prune_ratio=float(plan.claimed_prune_ratio),
            train_loss=stats[0],
            train_accuracy=stats[1],
            lr=self.lr,
            wall_time=wall,
            scored_indices=scored_idx,
            scored_losses=scored_losses,
        )
        self.epoch += 1
        return result

    # -- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "val") -> EvalResult:
        """Mean loss and accuracy of the model on ``"val"``, ``"test"`` or ``"train"`` (batched, no grad)."""
        if split not in ("val", "test", "train"):
            raise ValueError(f"split={split!r}; allowed: val, test, train")
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        hits = torch.zeros((), device=self.device, dtype=torch.int64)
        n = 0
        for xx, yy in self.data.split_batches(split, self.config.eval_batch_size):
            logits = self.model(xx)
            loss_sum += F.cross_entropy(logits, yy, reduction="sum")
            hits += (logits.argmax(1) == yy).sum()
            n += int(yy.shape[0])
        n = max(n, 1)
        loss, acc = torch.stack([loss_sum / n, hits.double().to(loss_sum.dtype) / n]).tolist()
        return EvalResult(loss, acc)
