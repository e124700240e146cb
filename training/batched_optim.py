"""SGD and AdamW over K stacked runs: one learning rate per run, and a mask that freezes runs with no rows.

Each parameter is a tensor ``[K, *shape]`` whose row ``k`` belongs to run ``k``. The update of each row follows
``torch.optim.SGD`` (momentum, dampening 0, Nesterov, L2 weight decay) or ``torch.optim.AdamW`` (betas 0.9 /
0.999, eps 1e-8, decoupled weight decay, per-run step counts for the bias corrections) op for op, so a row
differs from the torch optimizer only by float rounding of the per-run learning rate product.

An epoch's coefficients are prepared once, on the host, from the learning rates ``[S, K]`` and the activity
mask ``[S, K]`` of its S steps and copied to the device in one transfer (no host sync per step). In a step
where some runs are inactive, their rows of the parameters and optimizer state are copied before the update
and written back after it, so they stay bit-identical; steps where every run is active skip that.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["BatchedAdamW", "BatchedOptimizer", "BatchedSGD", "make_batched_optimizer"]


class BatchedOptimizer:
    """Base: ``prepare(lrs, active)`` once per epoch, ``step(b)`` after each backward, ``commit()`` at its end."""

    def __init__(self, params: list[torch.Tensor], weight_decay: float):
        self.params = list(params)
        self.num_runs = int(self.params[0].shape[0])
        self.weight_decay = float(weight_decay)
        self.state: list[dict[str, torch.Tensor]] = [self._init_state(p) for p in self.params]
        self._coef: torch.Tensor | None = None  # [S, n_coef, K] float32 on the device
        self._inactive: dict[int, torch.Tensor] = {}  # step -> int64 rows of its inactive runs (device)

    def _init_state(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _coefficients(self, lrs: np.ndarray, active: np.ndarray) -> np.ndarray:
        """``[S, n_coef, K]`` float64 coefficients of the epoch's steps."""
        raise NotImplementedError

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], coef: torch.Tensor) -> None:
        raise NotImplementedError

    def prepare(self, lrs: np.ndarray, active: np.ndarray) -> None:
        """Coefficients of an epoch: ``lrs`` ``[S, K]`` learning rates, ``active`` ``[S, K]`` bool."""
        dev = self.params[0].device
        self._coef = torch.as_tensor(self._coefficients(lrs, active), dtype=torch.float32).to(dev)
        active = np.asarray(active, dtype=bool)
        partial = [b for b in range(active.shape[0]) if not active[b].all()]
        rows = [np.flatnonzero(~active[b]) for b in partial]
        flat = torch.as_tensor(np.concatenate(rows) if rows else np.zeros(0), dtype=torch.int64).to(dev)
        self._inactive = dict(zip(partial, flat.split([len(r) for r in rows])))

    def commit(self) -> None:
        """End of the epoch (per-run counters advance here)."""

    @torch.no_grad()
    def step(self, b: int) -> None:
        """Update every active run with its gradient (``p.grad``, which the update may overwrite) and the
        coefficients of step ``b``."""
        if self._coef is None:
            raise RuntimeError("call prepare(lrs, active) before step()")
        coef, frozen = self._coef[b], self._inactive.get(b)
        for p, state in zip(self.params, self.state):
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            tensors = [p, *state.values()]
            saved = [t.index_select(0, frozen) for t in tensors] if frozen is not None else []
            self._update(p, g, state, coef)
            if frozen is not None:  # else saved is empty
                for t, old in zip(tensors, saved):
                    t.index_copy_(0, frozen, old)

    @torch.no_grad()
    def reset_run(self, k: int) -> None:
        """Run ``k``'s state back to that of a new optimizer (zeros), in place; the other runs are untouched."""
        for state in self.state:
            for t in state.values():
                t[k].zero_()

    def run_state(self, k: int) -> list[dict[str, torch.Tensor]]:
        """Run ``k``'s optimizer state: per parameter, name -> a copy of its row."""
        return [{n: t[k].clone() for n, t in s.items()} for s in self.state]


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-run ``[K]`` coefficient shaped to broadcast over ``like`` ``[K, ...]``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


class BatchedSGD(BatchedOptimizer):
    """``torch.optim.SGD`` per run: ``g += wd p``; ``buf = m buf + g`` (``buf = g`` on a run's first step: the
    buffer starts at 0); ``g = g + m buf`` (Nesterov) or ``buf``; ``p -= lr g``."""

    def __init__(self, params, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov) and self.momentum > 0
        super().__init__(params, weight_decay)

    def _init_state(self, p):
        return {"momentum_buffer": torch.zeros_like(p)} if self.momentum > 0 else {}

    def _coefficients(self, lrs, active):
        return (-np.where(active, lrs, 0.0))[:, None, :]

    def _update(self, p, g, state, coef):
        # In place on the gradient (the engine drops it after the step): no allocations, four passes.
        if self.weight_decay != 0:
            g = g.add_(p, alpha=self.weight_decay)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf.mul_(self.momentum).add_(g)
            g = g.add_(buf, alpha=self.momentum) if self.nesterov else buf
        p.addcmul_(g, _rows(coef[0], p))


class BatchedAdamW(BatchedOptimizer):
    """``torch.optim.AdamW`` per run (no amsgrad): ``p *= 1 - lr wd``; ``m = lerp(m, g, 1 - b1)``;
    ``v = b2 v + (1 - b2) g^2``; ``p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, with ``t``
    the run's own step count (``steps`` ``[K]``, host side)."""

    def __init__(
        self, params, weight_decay: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        super().__init__(params, weight_decay)
        self.steps = np.zeros(self.num_runs, dtype=np.int64)
        self._steps_after = self.steps

    def _init_state(self, p):
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}

    def _coefficients(self, lrs, active):
        b1, b2 = self.betas
        t = self.steps[None, :] + np.cumsum(active, axis=0)  # [S, K] step count at each step
        self._steps_after = t[-1].copy() if len(t) else self.steps.copy()
        safe_t = np.maximum(t, 1)
        decay = 1.0 - lrs * self.weight_decay
        neg_step_size = -lrs / (1.0 - b1**safe_t)
        bc2_sqrt = (1.0 - b2**safe_t) ** 0.5
        out = np.stack([decay, neg_step_size, bc2_sqrt], axis=1)
        return np.where(active[:, None, :], out, np.array([1.0, 0.0, 1.0])[None, :, None])

    def commit(self) -> None:
        self.steps = self._steps_after

    def reset_run(self, k):
        super().reset_run(k)
        self.steps = self.steps.copy()
        self.steps[k] = 0

    def run_state(self, k):
        out = super().run_state(k)
        for s in out:
            s["step"] = int(self.steps[k])
        return out

    def _update(self, p, g, state, coef):
        b1, b2 = self.betas
        if self.weight_decay != 0:
            p.mul_(_rows(coef[0], p))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = v.sqrt().div_(_rows(coef[2], p)).add_(self.eps)
        p.add_(m.mul(_rows(coef[1], p)).div_(denom))


def make_batched_optimizer(
    params: list[torch.Tensor], optimizer: str, momentum: float, nesterov: bool, weight_decay: float
) -> BatchedOptimizer:
    """The batched counterpart of what :class:`~prunegym.training.TrainingRun` builds for ``optimizer``."""
    if optimizer == "sgd":
        return BatchedSGD(params, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if optimizer == "adamw":
        return BatchedAdamW(params, weight_decay=weight_decay)
    raise ValueError(f"optimizer={optimizer!r} is not allowed; allowed: sgd, adamw")
