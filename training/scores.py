"""The score table: per-sample training statistics kept on the training device.

All fields are ``[N]`` tensors indexed by training-set position. Updates take the indices and unweighted
losses of the samples just trained (:meth:`ScoreTable.update`), or the mean loss of the batch each was trained
in (:meth:`ScoreTable.update_batch_scores`, the batch loss score), and never sync with the host.
"""

from __future__ import annotations

import torch

from .checks import check_fraction

__all__ = ["BATCH_EMA_RATE", "SCORES", "ScoreTable"]

# What a method may read as a sample's loss score: "sample", its own latest loss (``ScoreTable.loss``);
# "batch", the batch loss score (``ScoreTable.batch_score``), for loops that give one loss per batch.
SCORES = ("sample", "batch")
BATCH_EMA_RATE = 0.1  # BLS: 1 - alpha, the official alpha = 0.9 (mrazhou/BLS, seta.py line 374)


class ScoreTable:
    """Per sample: latest loss, EMA of loss and of its squared deviation, epoch last trained, times trained,
    forgetting events (correct -> incorrect flips between consecutive trainings); and ``labels``, each sample's
    training label (set by the engine; -1 where unknown, e.g. a streamed ``Dataset`` without ``targets``).

    ``ema_rate`` a in (0, 1]: ``mu <- (1 - a) mu + a loss`` and ``v <- (1 - a) v + a (loss - mu_old)^2``
    (Raju et al.'s rule); the first observation of a sample's own (unmixed) loss sets ``mu = loss``, ``v = 0``
    (``observed`` marks the samples that had one). Losses start at 0 and every sample starts equal, so a
    mean-threshold rule keeps everything before any training.

    ``batch_score``: the batch loss score (BLS; Zhou et al., CVPR 2026, official code mrazhou/BLS), the EMA of
    the mean loss of the batches a sample was in: ``s <- (1 - b) s + b L`` per batch, ``L`` the batch's
    unweighted mean loss (what a framework that gives one loss per batch reports), ``b`` = ``batch_ema_rate``
    in (0, 1] (default :data:`BATCH_EMA_RATE` = 0.1, the official ``alpha = 0.9`` as ``1 - alpha``). Every
    sample starts at 0 (no first-observation rule, no bias correction) and a sample in no batch keeps its
    score; see :meth:`update_batch_scores`.
    """

    def __init__(
        self,
        num_samples: int,
        device: torch.device | str = "cpu",
        ema_rate: float = 0.2,
        batch_ema_rate: float = BATCH_EMA_RATE,
    ):
        check_fraction(ema_rate, "ema_rate")
        check_fraction(batch_ema_rate, "batch_ema_rate")
        n, dev = int(num_samples), torch.device(device)
        self.num_samples = n
        self.ema_rate = float(ema_rate)
        self.batch_ema_rate = float(batch_ema_rate)
        self.loss = torch.zeros(n, device=dev)
        self.ema = torch.zeros(n, device=dev)
        self.ema_var = torch.zeros(n, device=dev)
        self.last_epoch = torch.full((n,), -1, dtype=torch.int64, device=dev)
        self.times_trained = torch.zeros(n, dtype=torch.int64, device=dev)
        self.forgetting = torch.zeros(n, dtype=torch.int64, device=dev)
        self.last_correct = torch.zeros(n, dtype=torch.bool, device=dev)
        self.observed = torch.zeros(n, dtype=torch.bool, device=dev)  # own (unmixed) loss recorded at least once
        # the training labels as the run sees them (noisy ones included), for class-wise rules; -1: not known
        self.labels = torch.full((n,), -1, dtype=torch.int64, device=dev)
        self.batch_score = torch.zeros(n, device=dev)  # BLS: EMA of the mean losses of the sample's batches

    @property
    def device(self) -> torch.device:
        return self.loss.device

    @torch.no_grad()
    def update(
        self,
        indices: torch.Tensor,
        losses: torch.Tensor,
        correct: torch.Tensor,
        epoch: int | torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> None:
        """Record one epoch's trained samples.

        ``indices`` ``[K]`` int64 positions (each at most once), ``losses`` ``[K]`` unweighted per-sample
        losses, ``correct`` ``[K]`` bool predictions; ``epoch``: the epoch (an int, or ``[K]`` int64 per row).
        ``valid`` ``[K]`` bool marks rows whose loss is the sample's own (False for mix-up rows): other rows count
        as trained but leave the loss statistics and forgetting record unchanged.
        """
        idx = indices.to(self.device, torch.int64)
        losses = losses.detach().to(self.loss.dtype)
        seen = self.observed[idx]  # a sample first trained only in mix-up rows has no loss statistics yet
        old_mu = self.ema[idx]
        a = self.ema_rate
        new_mu = torch.where(seen, (1 - a) * old_mu + a * losses, losses)
        new_v = torch.where(seen, (1 - a) * self.ema_var[idx] + a * (losses - old_mu) ** 2, torch.zeros_like(losses))
        flipped = seen & self.last_correct[idx] & ~correct
        if valid is not None:
            valid = valid.to(self.device)
            new_mu = torch.where(valid, new_mu, old_mu)
            new_v = torch.where(valid, new_v, self.ema_var[idx])
            losses = torch.where(valid, losses, self.loss[idx])
            flipped = flipped & valid
            correct = torch.where(valid, correct, self.last_correct[idx])
        self.ema[idx] = new_mu
        self.ema_var[idx] = new_v
        self.loss[idx] = losses
        self.forgetting[idx] += flipped.to(torch.int64)
        self.last_correct[idx] = correct
        self.last_epoch[idx] = epoch
        self.times_trained[idx] += 1
        self.observed[idx] = seen | valid if valid is not None else True

    @staticmethod
    def batch_loss_rows(
        indices: torch.Tensor, loss: torch.Tensor | float, correct: torch.Tensor | None
    ) -> torch.Tensor:
        """A loop's report of one batch where the loop has one loss per batch (``score="batch"``): the batch's
        unweighted mean ``loss`` (a number or a 0-d / 1-element float tensor, loss units) as ``[B]`` copies, one
        per sample of ``indices`` ``[B]`` (a view on the loss's device: no copy, no host sync). Anything but one
        loss, or a ``correct`` (a batch has no per-sample correctness), is a one-line ``ValueError``."""
        value = loss if isinstance(loss, torch.Tensor) else torch.as_tensor(loss, dtype=torch.float32)
        if value.numel() != 1 or not value.is_floating_point():
            got = f"shape {tuple(value.shape)}" if value.ndim else repr(loss)
            raise ValueError(
                f"update: score='batch' takes one loss per batch (a number or a 1-element float tensor); got {got} "
                f"for {indices.numel()} indices"
            )
        if correct is not None:
            raise ValueError("update: score='batch' records no per-sample correctness; pass correct=None")
        return value.detach().reshape(1).expand(indices.numel())

    @torch.no_grad()
    def update_batches(self, indices: torch.Tensor, batch_losses: torch.Tensor, epoch: int | torch.Tensor) -> None:
        """Record one epoch's trained samples when only their batches' losses are known (a loop with one loss
        per batch): ``indices`` ``[K]`` (each at most once) count as trained in ``epoch`` (``last_epoch``,
        ``times_trained``) with their per-sample statistics unchanged, and ``batch_losses`` ``[K]`` (each
        sample's batch mean loss) enter ``batch_score`` (:meth:`update_batch_scores`)."""
        no = torch.zeros(indices.shape, dtype=torch.bool, device=self.device)
        self.update(indices, batch_losses, no, epoch, valid=no)  # valid False: no loss of its own
        self.update_batch_scores(indices, batch_losses)

    @torch.no_grad()
    def update_batch_scores(self, indices: torch.Tensor, batch_losses: torch.Tensor) -> None:
        """Fold one epoch's batch losses into ``batch_score``: ``indices`` ``[M]`` int64 positions (each at most
        once), ``batch_losses`` ``[M]`` the unweighted mean loss (loss units, e.g. nats) of the batch each sample
        was trained in; ``s <- (1 - b) s + b L`` with ``b = batch_ema_rate``. A sample is in at most one batch
        per epoch, so folding the epoch's batches at once equals the official per-batch update. Nothing else
        changes (:meth:`update` counts the training)."""
        idx = indices.to(self.device, torch.int64)
        b = self.batch_ema_rate
        self.batch_score[idx] = (1 - b) * self.batch_score[idx] + b * batch_losses.detach().to(self.batch_score)

    @torch.no_grad()
    def clear(self) -> None:
        """Back to the state of a new table, in place (so row views of a batched store are cleared too)."""
        for t in (self.loss, self.ema, self.ema_var, self.times_trained, self.forgetting, self.batch_score):
            t.zero_()
        self.last_epoch.fill_(-1)
        self.last_correct.fill_(False)
        self.observed.fill_(False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        names = (
            "loss", "ema", "ema_var", "last_epoch", "times_trained", "forgetting", "last_correct", "observed",
            "batch_score",
        )  # fmt: skip
        return {k: getattr(self, k).clone() for k in names}
