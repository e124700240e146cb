"""The pruners in anyone's training loop: :class:`PruningSampler`, a ``torch.utils.data.Sampler``.

    sampler = PruningSampler("infobatch", num_samples=len(data), epochs=E, seed=0)
    loader = DataLoader(IndexedDataset(data), batch_size=128, sampler=sampler, num_workers=2)
    for epoch in range(E):
        sampler.set_epoch(epoch)
        for x, y, idx in loader:
            loss = F.cross_entropy(model(x), y, reduction="none")
            (loss * sampler.weights(idx).to(loss.device)).mean().backward()
            ...
            sampler.update(idx, loss.detach())

Each epoch yields the kept indices of the method's plan (its published schedule, :data:`POLICIES`, with its
pruner, :data:`PRUNERS`, the same score table and the same generator stream as the engine: the engine's run
of the same pruner and seed keeps the same samples). ``weights(indices)`` gives each sample's loss weight
(InfoBatch's ``1/(1 - r)``); ``update(indices, per_sample_loss)`` only stores the tensors (on any device, no
host sync); the epoch's losses enter the score table once, when the next epoch starts. A loop with one loss per
batch passes ``score="batch"`` (InfoBatch's pruner argument: BLS, the EMA of a sample's batches' losses): then
``update(indices, batch_loss)`` takes that one loss, and the backward pass scales it by ``weights(indices).mean()``.

Epochs: ``set_epoch(e)`` (as ``DistributedSampler``) moves to epoch ``e`` (0, 1, ... in order); without it,
the epoch advances on the first ``iter()`` after the whole plan was handed out. A repeated ``iter()`` within
an epoch (PyTorch's ``DataLoader`` calls it twice per epoch with workers) replays the same plan: never a new
one. ``len()`` is the current epoch's length (call ``set_epoch`` first for the new epoch's).

Under ``torch.distributed`` (``process_group="auto"``: the default group when initialised) every rank makes
the same plan and yields its share ``plan[rank::world_size]``, padded by wrapping around to equal lengths
(as ``DistributedSampler`` does) with loss weight 0 for the padding copies, so every rank runs the same
number of batches; the losses are all-gathered at the epoch's end so every rank holds the same score table.

``budget=b`` replaces the prune ratio: each pruned epoch's ratio is chosen so that the run's sample passes
end at ``b * N * E`` (within 1% when the method can reach it), counting the schedule's full epochs
(warm-up, annealing) as they come; ``kept_fractions``, ``realised_fraction`` and ``budget_spent`` report what
was really passed (the samples whose losses came back through ``update``, else the yielded ones).
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Protocol, TypeGuard

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from prunegym.training import EpochPlan, ScoreTable, check_fraction, check_seed, torch_generator
from prunegym.training.distributed import DistContext

from .base import DEFAULT_MAX_PRUNE_RATIO, Knob, PolicyContext
from .registry import POLICIES, PRUNERS, make_pruner, sampler_policies, sampler_unfit

__all__ = ["IndexedDataset", "PruningSampler", "SAMPLER_PRUNERS"]

SAMPLER_PRUNERS = sampler_policies()  # the shipped ones, at import (the sampler reads the registry when built)


def _number(v: Any, integral: bool = False) -> TypeGuard[float]:
    """Whether ``v`` is a real number (an integer if ``integral``), Python's or numpy's, and not a bool."""
    return isinstance(v, numbers.Integral if integral else numbers.Real) and not isinstance(v, bool)


class MapStyleDataset(Protocol):
    """A map-style dataset: items by index and a length (a ``torch.utils.data.Dataset`` need not have one)."""

    def __getitem__(self, i: int) -> Any: ...

    def __len__(self) -> int: ...


class IndexedDataset(Dataset):
    """``dataset`` whose items carry their index: ``(*item, index)`` (``(item, index)`` for a non-tuple)."""

    def __init__(self, dataset: MapStyleDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return (*item, i) if isinstance(item, tuple) else (item, i)


class _ScheduleOnly:
    """The action convention of a run outside an env: the policy's ``schedule`` is used, never an action."""

    def __init__(self, max_prune_ratio: float, knobs: tuple[Knob, ...]):
        self.max_prune_ratio, self.knobs = float(max_prune_ratio), tuple(knobs)

    def encode(self, prune_ratio: float = 0.0, **knobs: float) -> list[float]:
        raise RuntimeError("a PruningSampler plays its policy's schedule, not actions")


class PruningSampler(Sampler[int]):
    """The kept indices of ``pruner``'s plan, one epoch per pass (see the module docstring).

    ``pruner``: a name of ``POLICIES`` (the method's pruner and published schedule) that declares no
    ``sampler_unfit`` (shipped: :data:`SAMPLER_PRUNERS`). ``knobs``: the schedule's hyperparameters (e.g.
    ``prune_ratio=0.5, delta=0.875``) and the pruner's constructor arguments (e.g. ``warmup_epochs``).
    ``seed``: the run seed (the pruner's generator is the engine's ``pruner`` stream). ``device``: where the
    score table and plans live. ``ema_rate``: the score table's. ``process_group``: ``"auto"``, None (not
    distributed) or a process group. ``score``: ``"batch"`` when the pruner reads the batch loss score.
    """

    def __init__(
        self,
        pruner: str = "infobatch",
        num_samples: int | None = None,
        epochs: int | None = None,
        seed: int = 0,
        budget: float | None = None,
        *,
        device: torch.device | str = "cpu",
        ema_rate: float = 0.2,
        process_group: Any = "auto",
        **knobs: Any,
    ):
        allowed, unfit = ", ".join(sampler_policies()), sampler_unfit(pruner)
        if unfit is not None:
            raise ValueError(
                f"pruner {pruner!r} {unfit}, which a Sampler cannot do; allowed: {allowed} "
                "(PFB in a loop: examples/plain_loop.py)"
            )
        if pruner not in POLICIES:
            raise ValueError(f"unknown pruner {pruner!r}; allowed: {allowed}")
        for name, v in (("num_samples", num_samples), ("epochs", epochs)):
            if not _number(v, integral=True) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive int")
        budget = None if budget is None else check_fraction(budget, "budget")  # numpy's numbers too, not bools
        check_fraction(ema_rate, "ema_rate")
        assert num_samples is not None and epochs is not None  # checked just above
        num_samples, epochs, seed = int(num_samples), int(epochs), check_seed(seed)
        policy_cls = POLICIES[pruner]
        pruner_cls = PRUNERS[policy_cls.pruner]
        sig = inspect.signature(pruner_cls.__init__).parameters
        ctor = {n for n, p in sig.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        bad = sorted(set(knobs) - set(policy_cls.defaults) - ctor)
        if bad:
            raise ValueError(
                f"pruner {pruner!r} has no knob(s) {', '.join(bad)}; allowed: "
                f"{', '.join(sorted(set(policy_cls.defaults) | ctor)) or 'none'}"
            )
        defaults = {**{n: sig[n].default for n in ctor}, **policy_cls.defaults}
        for k, v in knobs.items():  # a numeric knob takes numbers (numpy's too), not bools
            want = "an int" if _number(defaults[k], integral=True) else "a real number" if _number(defaults[k]) else ""
            if want and not _number(v, integral=want == "an int"):
                raise ValueError(f"{k}={v!r} must be {want} (not a bool)")
        if budget is not None and "prune_ratio" in knobs:
            raise ValueError("give budget= or prune_ratio=, not both: the budget sets the ratio")
        self.name, self.num_samples, self.epochs, self.seed, self.budget = pruner, num_samples, epochs, seed, budget
        self.device = torch.device(device)
        self._pruner = make_pruner(policy_cls.pruner, **{k: v for k, v in knobs.items() if k in ctor})
        self.score = "batch" if getattr(self._pruner, "score", None) == "batch" else "sample"  # what update takes
        context = PolicyContext(
            pruner=policy_cls.pruner,
            epochs=epochs,
            codec=_ScheduleOnly(DEFAULT_MAX_PRUNE_RATIO, self._pruner.knobs),
            feature_names=("epoch_fraction",),
        )
        self.policy = policy_cls(context, **{k: v for k, v in knobs.items() if k not in ctor})
        self.scores = ScoreTable(num_samples, self.device, ema_rate)
        self._pruner.reset(num_samples, epochs, self.device, torch_generator(seed, "pruner", self.device))
        if process_group == "auto":
            process_group = "default" if dist.is_available() and dist.is_initialized() else None
        self.dist = DistContext.from_group(process_group)
        self.epoch = -1  # the epoch whose plan is current (-1: none yet)
        self.ratios: list[float] = []  # the prune ratio each epoch was planned with
        self.kept_fractions: list[float] = []  # sample passes / N of each finished epoch
        self._explicit, self._handed_out, self._finished, self._warned = False, False, True, False
        self.plan: EpochPlan | None = None  # the current epoch's EpochPlan (all ranks' samples, no padding)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._order: list[int] = []
        if budget is not None and budget < self._min_budget() - 1e-9:
            raise ValueError(
                f"budget={budget!r} is below what {pruner!r} can reach in {epochs} epochs "
                f"(at least {self._min_budget():.4f}: its full epochs plus a keep ratio of "
                f"{1 - DEFAULT_MAX_PRUNE_RATIO:.1f} in the others)"
            )

    # -- the schedule ----------------------------------------------------------------------------------------
    def _forced_full(self, e: int) -> bool:
        return self.policy.schedule(e)["prune_ratio"] <= 0.0 or e < self._pruner.warmup_epochs

    def _min_budget(self) -> float:
        full = sum(self._forced_full(e) for e in range(self.epochs))
        return (full + (self.epochs - full) * (1.0 - DEFAULT_MAX_PRUNE_RATIO)) / self.epochs

    def _count_at(self, e: int, action: dict, r: float) -> int:
        """Samples the pruner would plan at ratio ``r`` (its generator state is restored)."""
        g = self._pruner.generator
        state = g.get_state()
        try:
            return int(self._pruner.plan(e, self.scores, {**action, "prune_ratio": r}).indices.numel())
        finally:
            g.set_state(state)

    def _budget_ratio(self, e: int, action: dict) -> float:
        """The ratio whose plan comes closest to spreading the remaining budget over the pruned epochs left."""
        assert self.budget is not None  # _start asks only with a budget
        if action["prune_ratio"] <= 0.0:
            return 0.0  # the schedule's full epoch (warm-up, annealing) stays full
        n = self.num_samples
        later_full = sum(self._forced_full(k) for k in range(e + 1, self.epochs))
        left = self.epochs - e - later_full
        target = (self.budget * n * self.epochs - sum(self.kept_fractions) * n - later_full * n) / left
        lo, hi = 0, round(DEFAULT_MAX_PRUNE_RATIO * 1e6)  # ratios on the 1e-6 grid the pruners round to
        at_max = self._count_at(e, action, hi / 1e6)
        if at_max > target:
            if at_max == self._count_at(e, action, 0.0):
                return 0.0  # the ratio changes nothing this epoch (InfoBatch's first): later epochs make up
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"budget={self.budget!r} is out of reach for {self.name!r}: at its largest prune "
                    f"ratio {DEFAULT_MAX_PRUNE_RATIO} epoch {e} keeps {at_max} samples, more than the {target:.0f} "
                    "the budget leaves; the run spends more (budget_spent reports it)",
                    stacklevel=3,
                )
            return hi / 1e6
        while lo < hi:  # smallest ratio whose count is <= target (counts fall as the ratio grows)
            mid = (lo + hi) // 2
            if self._count_at(e, action, mid / 1e6) <= target:
                hi = mid
            else:
                lo = mid + 1
        if lo > 0:  # or the ratio just below, if its count is closer
            below, at = (abs(self._count_at(e, action, u / 1e6) - target) for u in (lo - 1, lo))
            lo -= below < at
        return lo / 1e6

    # -- epochs -----------------------------------------------------------------------------------------------
    def _start(self, e: int) -> None:
        if e >= self.epochs:
            raise ValueError(f"epoch {e} is past the {self.epochs} epochs this sampler was built for (epochs=)")
        action = dict(self.policy.schedule(e))
        if self.budget is not None:
            action["prune_ratio"] = self._budget_ratio(e, action)
        plan = self.plan = self._pruner.plan(e, self.scores, action)
        order = plan.indices.to(self.device)
        self._weights = torch.zeros(self.num_samples, device=self.device)
        self._weights[order] = plan.weights.to(self.device, torch.float32) if plan.weights is not None else 1.0
        self._is_pad = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
        if self.dist is not None:
            w, rank = self.dist.world_size, self.dist.rank
            k = int(order.numel())
            pad = math.ceil(k / w) * w - k
            padded = torch.cat([order, order.repeat(math.ceil(pad / k))[:pad]]) if k else order
            pads = torch.arange(k, padded.numel(), device=self.device)
            mine = pads[pads % w == rank]
            self._is_pad[padded[mine]] = True  # this rank's copies of other ranks' samples
            self._weights[padded[mine]] = 0.0
            order = padded[rank::w]
        self._order = order.tolist()  # the epoch's one host sync
        self.epoch, self._handed_out, self._finished = e, False, False
        self.ratios.append(float(action["prune_ratio"]))
        self._yielded = len(self._order) * (self.dist.world_size if self.dist is not None else 1)
        self._weights_on: dict[torch.device, torch.Tensor] = {self.device: self._weights}

    def end_epoch(self) -> None:
        """Put the current epoch's losses into the score table (and the pruner's state) now, without starting
        the next epoch (the next ``set_epoch`` / ``iter()`` does it otherwise). Idempotent; collective under
        ``torch.distributed`` (every rank calls it)."""
        if self._finished or self.epoch < 0:
            return
        dev = self._pending[0][1].device if self._pending else self.device
        if self._pending:
            idx = torch.cat([i.reshape(-1).to(dev, torch.int64) for i, _, _ in self._pending])
            loss = torch.cat([lo.reshape(-1).to(dev) for _, lo, _ in self._pending])
            correct = torch.cat(
                [
                    c.reshape(-1).to(dev, torch.bool)
                    if c is not None
                    else torch.zeros(lo.numel(), dtype=torch.bool, device=dev)
                    for _, lo, c in self._pending
                ]
            )
        else:
            idx = torch.zeros(0, dtype=torch.int64, device=dev)
            loss, correct = torch.zeros(0, device=dev), torch.zeros(0, dtype=torch.bool, device=dev)
        passes = int(idx.numel())
        keep = ~self._is_pad.to(dev)[idx]  # padding copies count as passes, not as scores
        idx, loss, correct = idx[keep], loss[keep], correct[keep]
        if self.dist is not None:
            counts = torch.tensor([passes], dtype=torch.int64, device=dev)
            dist.all_reduce(counts, group=self.dist.group)
            passes = int(counts.item())
            idx, loss = self.dist.all_gather_varlen(idx), self.dist.all_gather_varlen(loss)
            correct = self.dist.all_gather_varlen(correct.to(torch.uint8)).bool()
        if idx.numel():  # each sample once: a repeated report keeps its last loss
            last = torch.full((self.num_samples,), -1, dtype=torch.int64, device=dev)
            last.scatter_reduce_(0, idx, torch.arange(idx.numel(), device=dev), "amax")
            rows = last[last >= 0]
            idx, loss, correct = idx[rows], loss[rows], correct[rows]
        idx, loss, correct = idx.to(self.device), loss.to(self.device), correct.to(self.device)
        if self.score == "batch":  # loss: each sample's batch loss
            self.scores.update_batches(idx, loss, self.epoch)
        else:
            self.scores.update(idx, loss, correct, self.epoch)
        result = SimpleNamespace(
            indices=idx,
            losses=loss,
            correct=correct,
            mixed=torch.zeros(idx.numel(), dtype=torch.bool, device=self.device),
        )
        self._pruner.update(result, self.scores)
        self.kept_fractions.append((passes if self._pending else self._yielded) / self.num_samples)
        self._pending, self._finished = [], True

    def _next(self) -> None:
        self.end_epoch()
        self._start(self.epoch + 1)

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``: the current one (nothing changes) or the next (the current one's losses enter
        the score table and the next plan is made). Other values raise ``ValueError``. Under
        ``torch.distributed`` every rank calls it (the losses are gathered then)."""
        self._explicit = True
        if epoch == self.epoch:
            return
        if epoch != self.epoch + 1:
            raise ValueError(
                f"set_epoch({epoch!r}): the sampler is at epoch {self.epoch} and moves one epoch at "
                f"a time (allowed: {max(self.epoch, 0)} or {self.epoch + 1})"
            )
        self._next()

    def __iter__(self) -> Iterator[int]:
        if self.epoch < 0:
            self._start(0)
        elif self._handed_out and not self._explicit:
            self._next()
        return self._yield(self.epoch, self._order)

    def _yield(self, epoch: int, order: list[int]) -> Iterator[int]:
        if not order and self.epoch == epoch:
            self._handed_out = True
        last = len(order) - 1
        for i, v in enumerate(order):
            if i == last and self.epoch == epoch:
                self._handed_out = True  # before the last yield: a consumer may stop right after it
            yield v

    def __len__(self) -> int:
        if self.epoch < 0:
            self._start(0)
        return len(self._order)

    # -- the training loop's side ------------------------------------------------------------------------------
    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Loss weights ``[B]`` float32 of ``indices`` ``[B]`` in this epoch's plan (0 for padding copies and
        samples not in the plan), on the device of ``indices``."""
        idx = torch.as_tensor(indices)
        table = self._weights_on.get(idx.device)
        if table is None:
            table = self._weights_on[idx.device] = self._weights.to(idx.device)
        return table[idx.to(torch.int64)]

    def update(self, indices: torch.Tensor, per_sample_loss: Any, correct: torch.Tensor | None = None) -> None:
        """Record the unweighted per-sample losses ``[B]`` (and optionally correctness ``[B]`` bool) of the
        samples ``indices`` ``[B]`` trained this epoch; any device, no host sync (stored until the epoch ends).
        ``score="batch"``: the batch's one loss (a number or a 1-element tensor) instead, and no ``correct``."""
        idx = torch.as_tensor(indices)
        loss = ScoreTable.batch_loss_rows(idx, per_sample_loss, correct) if self.score == "batch" else per_sample_loss
        if idx.numel() != loss.numel() or (correct is not None and correct.numel() != idx.numel()):
            raise ValueError(
                f"update: {idx.numel()} indices but {loss.numel()} losses"
                + (f" and {correct.numel()} correct flags" if correct is not None else "")
            )
        if self.epoch < 0 or self._finished:
            raise RuntimeError("update() before the epoch's iteration started (iterate the loader first)")
        self._pending.append((idx.detach(), loss.detach(), correct.detach() if correct is not None else None))

    # -- reports ---------------------------------------------------------------------------------------------
    @property
    def kept_fraction(self) -> float:
        """The current epoch's planned sample passes over ``N`` (all ranks, padding included)."""
        return self._yielded / self.num_samples if self.epoch >= 0 else 1.0

    def _fractions(self) -> list[float]:
        """Kept fractions of the finished epochs, then the current one's planned passes until it ends."""
        return self.kept_fractions + ([self.kept_fraction] if self.epoch >= 0 and not self._finished else [])

    @property
    def realised_fraction(self) -> float:
        """Mean kept fraction (sample passes / N) of the epochs so far (1.0 before any); the current epoch
        counts with its planned passes until it ends."""
        fractions = self._fractions()
        return sum(fractions) / len(fractions) if fractions else 1.0

    @property
    def budget_spent(self) -> float:
        """Sample passes so far as a fraction of the full run's ``N * epochs`` (the current epoch as in
        :attr:`realised_fraction`)."""
        return sum(self._fractions()) / self.epochs
