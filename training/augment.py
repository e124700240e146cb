"""CIFAR augmentation on the training device: random crop with zero padding and horizontal flip.

Runs per batch on ``[B, C, H, W]`` tensors with a seeded generator on the same device; no host syncs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Pad ``x`` ``[B, C, H, W]`` by ``padding`` zeros, crop a random ``H x W`` window per sample, and flip
    each sample horizontally with probability 0.5. Returns a new tensor of the same shape."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (padding, padding, padding, padding))
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    cols = torch.arange(w, device=dev).view(1, w)
    cols = torch.where(flip.view(b, 1), w - 1 - cols, cols) + dx.view(b, 1)  # [B, W]
    rows = torch.arange(h, device=dev).view(1, h) + dy.view(b, 1)  # [B, H]
    bi = torch.arange(b, device=dev).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[bi, rows.view(b, h, 1), cols.view(b, 1, w)]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()
