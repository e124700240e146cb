"""The score table: per-sample training statistics kept on the training device.

All fields are ``[N]`` tensors indexed by training-set position. Updates take the indices and unweighted
losses of the samples just trained and never sync with the host.
"""

from __future__ import annotations

import torch

from .checks import check_fraction

__all__ = ["ScoreTable"]


class ScoreTable:
    """Per sample: latest loss, EMA of loss and of its squared deviation, epoch last trained, times trained,
    forgetting events (correct -> incorrect flips between consecutive trainings); and ``labels``, each sample's
    training label (set by the engine; -1 where unknown, e.g. a streamed ``Dataset`` without ``targets``).

    ``ema_rate`` a in (0, 1]: ``mu <- (1 - a) mu + a loss`` and ``v <- (1 - a) v + a (loss - mu_old)^2``
    (Raju et al.'s rule); the first observation of a sample's own (unmixed) loss sets ``mu = loss``, ``v = 0``
    (``observed`` marks the samples that had one). Losses start at 0 and every sample starts equal, so a
    mean-threshold rule keeps everything before any training.
    """

    def __init__(self, num_samples: int, device: torch.device | str = "cpu", ema_rate: float = 0.2):
        check_fraction(ema_rate, "ema_rate")
        n, dev = int(num_samples), torch.device(device)
        self.num_samples = n
        self.ema_rate = float(ema_rate)
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

    @torch.no_grad()
    def clear(self) -> None:
        """Back to the state of a new table, in place (so row views of a batched store are cleared too)."""
        for t in (self.loss, self.ema, self.ema_var, self.times_trained, self.forgetting):
            t.zero_()
        self.last_epoch.fill_(-1)
        self.last_correct.fill_(False)
        self.observed.fill_(False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        names = ("loss", "ema", "ema_var", "last_epoch", "times_trained", "forgetting", "last_correct", "observed")
        return {k: getattr(self, k).clone() for k in names}
