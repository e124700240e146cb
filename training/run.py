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
from .epoch import batch_loss, close_epoch, epoch_means, mix_inputs, run_lr, sample_losses, update_scores
from .flops import measure_flops
from .loading import load_run_data
from .meter import ComputeMeter
from .models import build_model
from .plan import EpochPlan, EpochResult, PassCounts, selector_flops
from .scores import ScoreTable
from .seeding import torch_generator
from .streaming import StreamSplits

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


class _EpochRows:
    """The rows of one epoch that reached the loss, in training order, on the device: indices, per-sample
    losses, correctness and mix-up marks (``[K]`` buffers for a plan of ``K`` rows, filled batch by batch)."""

    def __init__(self, k: int, device: torch.device):
        self.losses = torch.empty(k, device=device)
        self.correct = torch.empty(k, dtype=torch.bool, device=device)
        self.trained = torch.empty(k, dtype=torch.int64, device=device)
        self.mixed = torch.zeros(k, dtype=torch.bool, device=device)
        self.n = 0

    def add(self, per_sample: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, lam) -> None:
        rows = slice(self.n, self.n + int(idx.numel()))
        self.losses[rows] = per_sample.detach()
        self.correct[rows] = logits.detach().argmax(-1) == y
        self.trained[rows] = idx
        if lam is not None:
            self.mixed[rows] = lam < 1
        self.n = rows.stop

    def done(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(trained, losses, correct, mixed)``, each ``[M]`` for the ``M`` rows recorded."""
        n = self.n
        return self.trained[:n], self.losses[:n], self.correct[:n], self.mixed[:n]


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
        labels = splits.y_train if isinstance(splits, DataSplits) else splits.train_labels
        if labels is not None:
            self.scores.labels.copy_(labels.to(self.device))
        self.meter = ComputeMeter(measure_flops(self.model, splits.input_shape), self.num_train, config.epochs)
        self._shuffle_gen = torch_generator(config.seed, "shuffle", self.device)
        self._augment_gen = torch_generator(config.seed, "augment", self.device)
        self.pending_scoring = 0  # forward passes of score() not charged yet: the next epoch pays them
        self.lr = run_lr(config, 0)

    # -- helpers -------------------------------------------------------------------------------------------
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
        self.pending_scoring += int(idx.numel())
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
        training (see :class:`EpochPlan`) and charged as ``scoring_forward`` in this epoch. The semantics are
        :mod:`prunegym.training.epoch`'s, shared with :class:`~prunegym.training.BatchedTrainingRun`.
        """
        if self.done:
            raise RuntimeError(f"the run has completed its {self.epochs} epochs")
        plan.validate(self.num_train)
        dev = self.device
        k = int(plan.indices.numel())
        rec = _EpochRows(k, dev)
        passes = PassCounts(scoring_forward=self.pending_scoring)
        self.pending_scoring = 0
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        self.model.train()
        self._train_batches(plan, rec, passes)
        trained, losses, correct, mixed = rec.done()
        if self.dist is not None:  # every rank gets every rank's samples: identical score tables
            trained, losses, correct, mixed, passes = self._gather_ranks(trained, losses, correct, mixed, passes)
        scored = None
        if plan.score_after is not None:  # every rank scores the same samples (replicated): counted once
            scored_idx = plan.score_after.to(dev, torch.int64)
            scored = (scored_idx, self._eval_losses(scored_idx, self.config.label_smoothing))
            passes.scoring_forward += int(scored_idx.numel())
        self.lr = run_lr(self.config, self.epoch + 1)
        (means,) = epoch_means([losses], [correct])  # the epoch's one host sync
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - t0
        update_scores(
            self.scores, self.num_train, [self.epoch], [trained], [losses], [correct],
            [mixed] if plan.mixup is not None else None, plans=[plan], batch_size=self.config.batch_size,
        )  # fmt: skip
        result = close_epoch(
            self.meter,
            plan,
            passes,
            epoch=self.epoch,
            num_train=self.num_train,
            indices=trained,
            losses=losses,
            correct=correct,
            mixed=mixed,
            means=means,
            lr=self.lr,
            wall_time=wall,
            scored=scored,
        )
        self.epoch += 1
        return result

    def _train_batches(self, plan: EpochPlan, rec: _EpochRows, passes: PassCounts) -> None:
        """The epoch's optimizer steps over ``plan`` in batches of ``batch_size`` rows (this rank's share of each
        under DDP), recording the rows that reached the loss in ``rec`` and counting ``passes``."""
        cfg, dev, model, ddp = self.config, self.device, self.model, self.dist
        idx = plan.indices.to(dev)
        k = int(idx.numel())
        weights = plan.weights.to(dev, torch.float32) if plan.weights is not None else None
        mix = plan.mixup
        partner_all = mix.partner.to(dev, torch.int64) if mix is not None else None
        lam_all = mix.lam.to(dev, torch.float32) if mix is not None else None
        bs = cfg.batch_size
        n_batches = max(1, math.ceil(k / bs))
        batches = self.data.train_batches(idx, partner_all, bs, ddp.shard if ddp is not None else None)
        for b in range(n_batches if k else 0):
            lr = run_lr(cfg, self.epoch, b, n_batches)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            span = slice(b * bs, (b + 1) * bs)
            bi, bw = idx[span], weights[span] if weights is not None else None
            lam = lam_all[span] if lam_all is not None else None
            global_rows = int(bi.numel())
            if ddp is not None:  # this rank's share of the global batch
                bi = ddp.shard(bi)
                bw, lam = (ddp.shard(t) if t is not None else None for t in (bw, lam))
            rows_in = int(bi.numel())
            x, y, x_partner, y2 = next(batches)  # the rows bi (and their mix-up partners) of the training set
            if lam is not None:
                x = mix_inputs(x, x_partner, lam)
            if self.data.augment:
                x = random_crop_flip(x, self._augment_gen)
            h = model.shallow(x)
            if plan.selector is not None:
                rows = plan.selector(h.detach(), bi)
                passes.selector_flops += selector_flops(plan.selector, rows_in, int(rows.numel()), tuple(h.shape))
                h, y, bi = h[rows], y[rows], bi[rows]
                bw = bw[rows] if bw is not None else None
                if lam is not None:
                    lam, y2 = lam[rows], y2[rows]
            m = int(h.shape[0])
            passes.shallow_forward += rows_in
            # Rows reaching the loss in the whole (global) batch: the loss is their weighted mean.
            denom = m if ddp is None else global_rows if plan.selector is None else ddp.sum_int(m, dev)
            if denom == 0:
                continue
            logits = model.deep(h)
            per_sample = sample_losses(logits, y, cfg.label_smoothing, y2 if lam is not None else None, lam)
            loss = batch_loss(per_sample, bw, denom)
            self.optimizer.zero_grad(set_to_none=ddp is None)
            loss.backward()
            if ddp is not None:
                ddp.all_reduce_grads(self.model.parameters())
            self.optimizer.step()
            passes.shallow_backward += rows_in
            passes.deep_forward += m
            passes.deep_backward += m
            rec.add(per_sample, logits, y, bi, lam)

    def _gather_ranks(self, trained, losses, correct, mixed, passes: PassCounts):
        """Every rank's rows of the epoch (all-gathered, in rank order) and the passes summed over ranks
        (scoring passes are replicated on every rank: counted once)."""
        ddp = self.dist
        assert ddp is not None
        losses, trained = ddp.all_gather_varlen(losses), ddp.all_gather_varlen(trained)
        correct = ddp.all_gather_varlen(correct.to(torch.uint8)).bool()
        mixed = ddp.all_gather_varlen(mixed.to(torch.uint8)).bool()
        names = [f for f in PassCounts.__dataclass_fields__ if f != "scoring_forward"]
        counts = torch.tensor([float(getattr(passes, f)) for f in names], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(counts, group=ddp.group)
        summed = {f: (c if f == "selector_flops" else int(c)) for f, c in zip(names, counts.tolist())}
        return trained, losses, correct, mixed, PassCounts(**summed, scoring_forward=passes.scoring_forward)

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
