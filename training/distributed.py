"""One training run over several processes with ``torch.distributed`` (launch with ``torchrun``).

Every rank holds the whole dataset and the same seed, so every pruner makes the same plan on every rank
without communication. Each global batch of the plan is split across ranks (rank ``r`` takes rows
``r, r + W, r + 2W, ...``); each rank's loss is ``sum(weight_i * loss_i) / M`` with ``M`` the number of rows
that reach the loss across all ranks, and gradients are summed with ``all_reduce``: the update equals the
single-process one up to float summation order. Per-sample losses, correctness and indices are all-gathered
(indices as int64, never cast to the loss dtype) so every rank's score table is the same.

Limits: BatchNorm statistics are per rank (as in plain DDP without SyncBatchNorm), so models with BatchNorm
match a single-process run only approximately; an in-batch selector (PFB) sees each rank's shard only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = ["DistContext"]


@dataclass
class DistContext:
    """A process group and this process's place in it."""

    group: ProcessGroup | None = None

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    @classmethod
    def from_group(cls, group: Any) -> DistContext | None:
        """``None`` for no group; ``"default"`` or ``True`` for the default (``init_process_group``) group."""
        if group is None or group is False:
            return None
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(
                "process_group given but torch.distributed is not initialised; "
                "call torch.distributed.init_process_group first (torchrun does the environment)"
            )
        return cls(None if group in ("default", True) else group)

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share ``rows[rank::world_size]`` of a global batch."""
        return rows[self.rank :: self.world_size]

    def sum_int(self, value: int, device: torch.device) -> int:
        """Sum of an int over ranks (one small all-reduce)."""
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, group=self.group)
        return int(t.item())

    def all_reduce_grads(self, params) -> None:
        """Sum every parameter's gradient over ranks, flattened into one buffer per dtype."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def all_gather_varlen(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate ``tensor`` ``[m_r, ...]`` of every rank in rank order (lengths may differ); the dtype
        is kept (int64 indices stay int64)."""
        n = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n, group=self.group)
        lengths = [int(s.item()) for s in sizes]
        longest = max(lengths)
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:s] for p, s in zip(parts, lengths)])
