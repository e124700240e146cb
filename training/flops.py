"""FLOPs per sample of each pass, measured from the model with ``torch.utils.flop_counter.FlopCounterMode``.

Backward is measured, not assumed to be twice the forward: the shallow backward computes weight gradients
only (the input needs no gradient), the deep backward also the gradient of its input features.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .models import SplitModel

__all__ = ["PassFlops", "measure_flops"]


@dataclass(frozen=True)
class PassFlops:
    """FLOPs per sample (one multiply-add = 2 FLOPs) of each pass through a :class:`SplitModel`."""

    shallow_forward: float
    deep_forward: float
    shallow_backward: float
    deep_backward: float

    @property
    def forward(self) -> float:
        return self.shallow_forward + self.deep_forward

    @property
    def train_step(self) -> float:
        """Forward plus backward of one sample through the whole model."""
        return self.shallow_forward + self.deep_forward + self.shallow_backward + self.deep_backward

    @property
    def shallow_share(self) -> float:
        """Fraction in [0, 1] of a full training step's FLOPs spent in the shallow part."""
        return (self.shallow_forward + self.shallow_backward) / self.train_step

    def to_dict(self) -> dict:
        return asdict(self)


def _count(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def measure_flops(model: SplitModel, input_shape: tuple[int, ...], batch: int = 4) -> PassFlops:
    """Measure :class:`PassFlops` of ``model`` on a CPU copy with a batch of ``batch`` zero inputs."""
    m = copy.deepcopy(model).to("cpu").train()
    x = torch.zeros((batch, *input_shape))
    holder: dict[str, torch.Tensor] = {}

    def shallow_fwd():
        holder["h"] = m.shallow(x)

    sf = _count(shallow_fwd)
    h_in = holder["h"].detach().requires_grad_(True)

    def deep_fwd():
        out = m.deep(h_in)
        holder["loss"] = F.cross_entropy(out, torch.zeros(batch, dtype=torch.long))

    df = _count(deep_fwd)
    db = _count(lambda: holder["loss"].backward())
    assert h_in.grad is not None  # deep_fwd's loss backpropagated into the leaf h_in
    grad_h = h_in.grad.detach()
    sb = _count(lambda: holder["h"].backward(grad_h))
    return PassFlops(sf / batch, df / batch, sb / batch, db / batch)
