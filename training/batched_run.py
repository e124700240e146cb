"""K training runs of one task advanced in lockstep as one model: :class:`BatchedTrainingRun`.

Run ``k`` of a batch is the :class:`~prunegym.training.TrainingRun` of ``config.replace(seed=seeds[k])``: the
same split, initial weights, seed streams (``init``, ``shuffle``, ``augment``, and ``generator(stream)``),
optimizer, learning-rate schedule, score table, compute meter and FLOPs. Kept sets, pass counts and FLOPs of
decision rules that read no losses (``full``, ``uniform``) are identical. Weights, losses and scores agree
within float rounding: the stacked matmuls may sum in another order than the per-run ones (on CPU the MLP
runs usually come out bit-identical; the tests allow ``rtol=1e-4, atol=1e-5`` after a few epochs, and the gap
can grow with training length, as between any two float-order variants of SGD). Rules that compare losses
(a top-k by loss, a below-mean test) can therefore flip near-ties and keep a few other samples.

Speed: one gather, one forward and one backward per step serve all K runs, and the optimizer is a few
tensor ops per parameter; the hot loop has no Python loop over runs (except CIFAR augmentation, drawn from
each run's own stream) and no host sync. Stacking pays for small models on CPU and for any model on a GPU;
on CPU a conv net gains nothing and may run slower than sequential runs (its activations fall out of cache).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .augment import random_crop_flip
from .batched_data import BatchedData, load_batched_data, reload_run
from .batched_inputs import stack_plans
from .batched_model import BACKENDS, StackedModel
from .batched_optim import make_batched_optimizer
from .batched_views import RunView, row_views
from .config import RunConfig
from .epoch import batch_loss, close_epoch, epoch_means, mix_inputs, run_lr, sample_losses, update_scores
from .flops import measure_flops
from .meter import ComputeMeter
from .models import SplitModel, build_model
from .plan import EpochPlan, EpochResult, PassCounts
from .run import EvalResult, resolve_device
from .scores import ScoreTable
from .seeding import check_seed, torch_generator

__all__ = ["BatchedTrainingRun", "RunView"]


class BatchedTrainingRun:
    """K runs of ``config`` with run seeds ``seeds`` (``config.seed`` is ignored), trained as one model.

    ``run_epoch(plans)`` trains one epoch of every run, ``plans[k]`` for run ``k``; ``evaluate(split)``
    measures every run. Per run ``k``: ``configs[k]``, ``scores[k]`` (a :class:`ScoreTable` viewing row ``k``
    of the ``[K, N]`` store ``score_store``), ``meters[k]``, ``runs[k]`` (a :class:`RunView`), ``model(k)``,
    ``generator(k, stream)``, ``full_plan(k)``, ``optimizer_state(k)``. The samples are held once
    (:class:`~prunegym.training.batched_data.BatchedData`, per-run index maps).

    ``backend``: ``"bmm"`` (batched matmuls, grouped convolutions), ``"func"`` (``torch.func.vmap``) or
    ``"auto"`` (the faster for the model type); see :mod:`prunegym.training.batched_model`. Models with
    BatchNorm are refused. Plans with an in-batch ``selector`` (PFB) are refused.

    Each run counts its own epochs (``epochs_completed[k]``, ``runs[k].epoch``): a ``None`` plan leaves a run
    out of an epoch (untouched), and :meth:`reset_run` restarts one run from a new seed while the others go on.

    ``overrides``: per run, ``RunConfig`` fields that differ from ``config`` (a data regime drawn per episode:
    ``label_noise``, ``imbalance``); with them, or ``per_run_data``, every run holds its own samples and
    labels (:mod:`prunegym.training.batched_data`), so a later :meth:`reset_run` may change them, and a long
    tail their training-set size (``runs[k].num_train``; the store keeps room ``num_train`` per run)."""

    def __init__(
        self,
        config: RunConfig,
        seeds,
        backend: str = "auto",
        data: BatchedData | None = None,
        overrides: list[dict] | None = None,
        per_run_data: bool = False,
    ):
        seeds = [check_seed(s, "seeds", where=f" (entry {i})") for i, s in enumerate(seeds)]
        if not seeds:
            raise ValueError("seeds=[] must be a non-empty list of ints")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
        self.seeds = [int(s) for s in seeds]
        self.num_runs = k_runs = len(self.seeds)
        self.config = config
        if overrides is not None and len(overrides) != k_runs:
            raise ValueError(f"overrides has {len(overrides)} entries; it needs one per seed ({k_runs})")
        self.configs = [config.replace(seed=s, **(overrides[k] if overrides else {})) for k, s in enumerate(seeds)]
        self.device = resolve_device(config.device)
        per_run = per_run_data or overrides is not None
        self.data = data if data is not None else load_batched_data(self.configs, self.device, per_run=per_run)
        if self.data.num_runs != k_runs:
            raise ValueError(f"data holds {self.data.num_runs} runs but {k_runs} seeds were given")
        self.num_train = n = self.data.num_train  # room per run (runs[k].num_train: run k's size)
        self.epochs = config.epochs
        self.epochs_completed = [0] * k_runs
        models = [self._initial_model(s) for s in self.seeds]
        self.stack = StackedModel(models, backend)
        self.backend = self.stack.backend
        self.param_count = self.stack.param_count
        self.flops = flops = measure_flops(models[0], self.data.input_shape)
        del models
        self.optimizer = make_batched_optimizer(
            self.stack.parameters(), config.optimizer, config.momentum, config.nesterov, config.weight_decay
        )
        self.score_store = ScoreTable(k_runs * n, self.device, config.ema_rate)
        self.score_store.labels.copy_(self.data.y.index_select(0, self.data.train.reshape(-1)))
        self.scores = row_views(self.score_store, k_runs, self.data.sizes)
        self.meters = [ComputeMeter(flops, self.data.train_size(k), config.epochs) for k in range(k_runs)]
        self._shuffle_gens = [torch_generator(s, "shuffle", self.device) for s in self.seeds]
        self._augment_gens = [torch_generator(s, "augment", self.device) for s in self.seeds]
        self.pending_scoring = [0] * k_runs  # per run, as TrainingRun.pending_scoring
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}
        self.lr = [run_lr(config, 0)] * k_runs  # per run, after its epochs completed
        self.runs = [RunView(self, k) for k in range(k_runs)]

    # -- per-run helpers -----------------------------------------------------------------------------------
    def _initial_model(self, seed: int) -> SplitModel:
        """The initial weights of the run of ``seed`` (as ``TrainingRun`` builds them)."""
        c = self.config
        init = torch_generator(seed, "init")
        shape, classes = self.data.input_shape, self.data.num_classes
        return build_model(c.model, shape, classes, init, split=c.model_split, device=self.device, **c.model_kwargs)

    def generator(self, k: int, stream: str) -> torch.Generator:
        """A fresh generator on the training device for run ``k``'s ``stream`` (as ``TrainingRun.generator``)."""
        return torch_generator(self.seeds[k], stream, self.device)

    def full_plan(self, k: int) -> EpochPlan:
        """Run ``k``'s full plan: all samples in an order from its own ``shuffle`` stream, weight 1."""
        n = self.data.train_size(k)
        return EpochPlan(torch.randperm(n, generator=self._shuffle_gens[k], device=self.device))

    def model(self, k: int) -> SplitModel:
        """A copy of run ``k``'s current weights as a :class:`SplitModel`."""
        return self.stack.model(k)

    def optimizer_state(self, k: int) -> list[dict]:
        """A copy of run ``k``'s optimizer state, per parameter (``momentum_buffer`` / ``exp_avg``, ...)."""
        return self.optimizer.run_state(k)

    @property
    def epoch(self) -> int:
        """The fewest epochs completed by any run (every run's count unless runs were reset apart)."""
        return min(self.epochs_completed)

    @property
    def done(self) -> bool:
        """Every run has completed its epochs."""
        return self.epoch >= self.epochs

    def reset_run(self, k: int, seed: int, **overrides) -> None:
        """Restart run ``k`` as the run of ``seed``, in place: its splits, initial weights, optimizer state,
        score row, meter, seed streams, learning rate and epoch count become those of a new run of
        ``config.replace(seed=seed, **overrides)`` (``overrides``: a data regime, see the class docstring);
        the other runs are untouched (bit for bit)."""
        if not 0 <= k < self.num_runs:
            raise ValueError(f"run index {k!r} is out of range [0, {self.num_runs})")
        seed = check_seed(seed)
        self.seeds[k], self.configs[k] = seed, self.config.replace(seed=seed, **overrides)
        reload_run(self.data, self.configs[k], k)
        self.stack.set_run(k, self._initial_model(seed))
        self.optimizer.reset_run(k)
        n_k = self.data.train_size(k)
        row_views(self.score_store, self.num_runs)[k].clear()  # the whole row, padding included
        self.scores[k] = row_views(self.score_store, self.num_runs, self.data.sizes)[k]  # its size may change
        self.scores[k].labels.copy_(self.data.y.index_select(0, self.data.train[k, :n_k]))
        self.meters[k] = ComputeMeter(self.flops, n_k, self.epochs)
        self._shuffle_gens[k] = torch_generator(seed, "shuffle", self.device)
        self._augment_gens[k] = torch_generator(seed, "augment", self.device)
        self.pending_scoring[k] = 0
        self.lr[k] = run_lr(self.config, 0)
        self.epochs_completed[k] = 0

    def _gather(self, pos: torch.Tensor, reuse: bool = True) -> torch.Tensor:
        """Pool inputs at positions ``pos`` ``[K, W]`` -> ``[K, W, *input_shape]`` (one row gather). With
        ``reuse`` it is written into a buffer kept per shape (large allocations cost page faults on every
        step on CPU), valid until the next reusing gather of the same shape."""
        x = self.data.x
        shape = (*pos.shape, *x.shape[1:])
        if not reuse:
            return x.index_select(0, pos.reshape(-1)).view(shape)
        buf = self._buffers.get(shape)
        if buf is None:
            buf = self._buffers[shape] = torch.empty(shape, dtype=x.dtype, device=x.device)
        torch.index_select(x, 0, pos.reshape(-1), out=buf.view(-1, *x.shape[1:]))
        return buf

    def _labels(self, pos: torch.Tensor) -> torch.Tensor:
        return self.data.y.index_select(0, pos.reshape(-1)).view(pos.shape)

    # -- scoring pass --------------------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-sample losses ``[M_k]`` of ``indices[k]`` under run ``k``'s current model (no grad), charged to
        each run's next epoch as scoring passes (as ``TrainingRun.score``)."""
        if len(indices) != self.num_runs:
            raise ValueError(f"score needs {self.num_runs} index tensors (one per run), got {len(indices)}")
        idx = [i.to(self.device, torch.int64).view(-1) for i in indices]
        for k, i in enumerate(idx):
            self.pending_scoring[k] += int(i.numel())
        return self._eval_losses(idx)

    @torch.no_grad()
    def _eval_losses(self, idx: list[torch.Tensor], label_smoothing: float = 0.0) -> list[torch.Tensor]:
        """Per-sample cross-entropy ``[M_k]`` of run ``k``'s training samples ``idx[k]`` (no grad; one batched
        forward per chunk of ``eval_batch_size`` rows of every run)."""
        counts = [int(i.numel()) for i in idx]
        width = max(counts)
        pad = torch.stack([F.pad(i, (0, width - c)) for i, c in zip(idx, counts)])
        pos = self.data.train.gather(1, pad)
        out = []
        for s in range(0, width, self.config.eval_batch_size):
            p = pos[:, s : s + self.config.eval_batch_size]
            out.append(sample_losses(self.stack(self._gather(p)), self._labels(p), label_smoothing))
        losses = torch.cat(out, 1) if out else torch.zeros(self.num_runs, 0, device=self.device)
        return [losses[k, :c] for k, c in enumerate(counts)]

    # -- one epoch -----------------------------------------------------------------------------------------
    def _check_plans(self, plans) -> list[EpochPlan | None]:
        plans = list(plans)
        if len(plans) != self.num_runs:
            raise ValueError(f"run_epoch needs {self.num_runs} plans (one per run), got {len(plans)}")
        for k, plan in enumerate(plans):
            if plan is None:
                continue
            if self.epochs_completed[k] >= self.epochs:
                raise RuntimeError(
                    f"run {k} has completed its {self.epochs} epochs; pass None as its plan or reset_run it"
                )
            if plan.selector is not None:
                raise ValueError(
                    f"plans[{k}] has an in-batch selector (PFB): BatchedTrainingRun does not support "
                    "in-batch selection; run such methods with PruningEnv (one TrainingRun each)"
                )
            plan.validate(self.data.train_size(k))
        return plans

    def _schedule(self, counts: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
        """Rows ``[S, K]`` of each run in each step and learning rates ``[S, K]``; S = steps of the epoch."""
        bs, e, k_runs = self.config.batch_size, self.epochs_completed, self.num_runs
        steps = max(math.ceil(c / bs) for c in counts)
        b = np.arange(steps)[:, None]
        rows = np.clip(np.asarray(counts)[None, :] - b * bs, 0, bs)
        n_batches = [max(1, math.ceil(c / bs)) for c in counts]
        cfg = self.config
        lrs = np.array([[run_lr(cfg, e[k], i, n_batches[k]) for k in range(k_runs)] for i in range(steps)]).reshape(
            steps, k_runs
        )
        return rows, lrs, steps

    def run_epoch(self, plans) -> list[EpochResult | None]:
        """Train one epoch of every run, ``plans[k]`` for run ``k``; one :class:`EpochResult` per run.

        Step ``b`` trains rows ``[b B, (b + 1) B)`` of every plan (B = ``batch_size``); a run with fewer rows
        is padded with rows of weight 0, and a run with no rows left in a step keeps its weights and
        optimizer state bit-identical. Run ``k``'s loss is ``sum(weight_i * loss_i) / m_k`` over its ``m_k``
        real rows; the learning rate follows its own progress ``(epoch_k + b / n_batches_k) / epochs``.
        Padded rows are charged no FLOPs. One backward serves all runs; the host syncs once, at the end.
        ``plans[k] = None`` leaves run ``k`` out: it trains nothing, its epoch count, meter and state stay
        as they are, and its result is ``None``. ``wall_time`` of each result is the batched epoch's
        wall-clock divided by the number of runs trained (its share); ``extra["batch_wall_time"]`` is the whole.
        """
        if self.done:
            raise RuntimeError(f"the runs have completed their {self.epochs} epochs")
        plans = self._check_plans(plans)
        if all(p is None for p in plans):
            raise ValueError("run_epoch got no plan (every entry is None)")
        skipped = [p is None for p in plans]
        empty = EpochPlan(torch.zeros(0, dtype=torch.int64, device=self.device))
        plans = [empty if p is None else p for p in plans]
        dev, n = self.device, self.num_train
        counts = [int(p.indices.numel()) for p in plans]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        idx, losses, correct, mixed, mixing = self._train_steps(plans, counts)
        trained = [idx[k, :c] for k, c in enumerate(counts)]
        run_losses = [losses[k, :c] for k, c in enumerate(counts)]
        run_correct = [correct[k, :c] for k, c in enumerate(counts)]
        run_mixed = [mixed[k, :c] for k, c in enumerate(counts)]
        scored = self._score_after(plans)
        means = epoch_means(run_losses, run_correct)  # the epoch's one host sync
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        wall = time.perf_counter() - t0
        e_k, bs, mix = self.epochs_completed, self.config.batch_size, run_mixed if mixing else None
        update_scores(self.score_store, n, e_k, trained, run_losses, run_correct, mix, plans=plans, batch_size=bs)
        n_trained = self.num_runs - sum(skipped)
        results: list[EpochResult | None] = []
        for k, (plan, c) in enumerate(zip(plans, counts)):
            if skipped[k]:
                results.append(None)
                continue
            self.lr[k] = run_lr(self.config, e_k[k] + 1)
            passes = PassCounts(c, c, c, c, self.pending_scoring[k])
            self.pending_scoring[k] = 0
            scored_k = scored[k]
            if scored_k is not None:
                passes.scoring_forward += int(scored_k[0].numel())
            results.append(
                close_epoch(
                    self.meters[k],
                    plan,
                    passes,
                    epoch=e_k[k],
                    num_train=self.data.train_size(k),
                    indices=trained[k],
                    losses=run_losses[k],
                    correct=run_correct[k],
                    mixed=run_mixed[k],
                    means=means[k],
                    lr=self.lr[k],
                    wall_time=wall / n_trained,
                    scored=scored_k,
                    extra={"batch_wall_time": wall, "num_runs": self.num_runs},
                )
            )
            e_k[k] += 1
        return results

    def _train_steps(self, plans: list[EpochPlan], counts: list[int]):
        """The epoch's optimizer steps over the stacked plans (``counts[k]`` rows of run ``k``): returns the
        stacked indices ``[K, L]``, per-sample losses, correctness and mix-up marks ``[K, L]`` (valid in each
        run's first ``counts[k]`` columns) and whether any plan mixed."""
        cfg, dev, data, k_runs = self.config, self.device, self.data, self.num_runs
        width = max(counts)
        rows, lrs, steps = self._schedule(counts)
        self.optimizer.prepare(lrs, rows > 0)
        denom = torch.as_tensor(np.maximum(rows, 1), dtype=torch.float32).to(dev)  # [S, K]
        has_w = any(p.weights is not None for p in plans)
        padded = [bool((r < r.max()).any()) for r in rows]  # steps with padding rows
        stacked = stack_plans(plans, counts, data.train, any(padded), dev)
        idx, weights = stacked.indices, stacked.weights  # [K, L]
        pos = data.train.gather(1, idx)  # pool positions
        lam, partner = stacked.lam, stacked.partner
        losses = torch.empty(k_runs, width, device=dev)
        correct = torch.empty(k_runs, width, dtype=torch.bool, device=dev)
        mixed = torch.zeros(k_runs, width, dtype=torch.bool, device=dev)
        params = self.stack.parameters()
        bs = cfg.batch_size
        for b in range(steps):
            c0, c1 = b * bs, min((b + 1) * bs, width)
            p_b = pos[:, c0:c1]
            x, y = self._gather(p_b), self._labels(p_b)
            lam_b = y2 = None
            if lam is not None and partner is not None:
                lam_b, part_b = lam[:, c0:c1], partner[:, c0:c1]
                x, y2 = mix_inputs(x, self._gather(part_b, reuse=False), lam_b), self._labels(part_b)
                mixed[:, c0:c1] = lam_b < 1
            if data.augment:  # each run's own stream, drawn for its real rows only (as TrainingRun)
                for k in range(k_runs):
                    if rows[b, k]:
                        x[k, : rows[b, k]] = random_crop_flip(x[k, : rows[b, k]], self._augment_gens[k])
            logits = self.stack(x)  # [K, w, C]
            per_sample = sample_losses(logits, y, cfg.label_smoothing, y2, lam_b)
            w_b = weights[:, c0:c1] if weights is not None and (has_w or padded[b]) else None
            loss = batch_loss(per_sample, w_b, denom[b])
            for p in params:
                p.grad = None
            loss.backward()
            self.optimizer.step(b)
            losses[:, c0:c1] = per_sample.detach()
            correct[:, c0:c1] = logits.detach().argmax(-1) == y
        self.optimizer.commit()
        return idx, losses, correct, mixed, lam is not None

    def _score_after(self, plans: list[EpochPlan]) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Each plan's ``score_after`` samples and their losses after the epoch's training (as
        ``TrainingRun.run_epoch`` scores them: one forward each, charged to this epoch), in one batched pass;
        ``None`` for a run whose plan scores nothing."""
        after = [p.score_after for p in plans]
        if all(a is None for a in after):
            return [None] * len(plans)
        empty = torch.zeros(0, dtype=torch.int64, device=self.device)
        idx = [a.to(self.device, torch.int64) if a is not None else empty for a in after]
        losses = self._eval_losses(idx, self.config.label_smoothing)
        return [(i, lo) if a is not None else None for a, i, lo in zip(after, idx, losses)]

    # -- evaluation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str = "val") -> list[EvalResult]:
        """Mean loss and accuracy of every run on its ``"val"``, ``"test"`` or ``"train"`` split (one batched
        forward per chunk of ``eval_batch_size`` samples of each run)."""
        if split not in ("val", "test", "train"):
            raise ValueError(f"split={split!r}; allowed: val, test, train")
        pos_all = getattr(self.data, split)  # [K, M]
        m = int(pos_all.shape[1])
        ragged = self.data.sizes if split == "train" else None  # run k's first sizes[k] positions count, not padding
        sizes = torch.tensor(ragged, device=self.device)[:, None] if ragged is not None else None
        loss_sum = torch.zeros(self.num_runs, device=self.device)
        hits = torch.zeros(self.num_runs, device=self.device, dtype=torch.int64)
        for s in range(0, m, self.config.eval_batch_size):
            pos = pos_all[:, s : s + self.config.eval_batch_size]
            logits, y = self.stack(self._gather(pos)), self._labels(pos)
            real = torch.arange(s, s + int(pos.shape[1]), device=self.device) < sizes if sizes is not None else True
            ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
            loss_sum += (ce * real).sum(1)
            hits += ((logits.argmax(-1) == y) & real).sum(1)
        d = sizes[:, 0].clamp(min=1).to(loss_sum.dtype) if sizes is not None else max(m, 1)
        pairs = torch.stack([loss_sum / d, hits.double().to(loss_sum.dtype) / d], 1).tolist()
        return [EvalResult(lo, acc) for lo, acc in pairs]
