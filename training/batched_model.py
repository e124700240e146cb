"""K models of one architecture as one: parameters stacked along a leading run dimension.

Each parameter of the model is one contiguous leaf tensor ``[K, *shape]`` whose row ``k`` is run ``k``'s, so
one backward yields every run's gradients and a vectorised optimizer updates all runs with a few tensor ops
per parameter. The forward of inputs ``[K, B, ...]`` to logits ``[K, B, C]`` has two back ends that compute
the same function (up to float rounding):

* ``"bmm"``: batched matmuls for ``Linear`` (``torch.baddbmm`` forward, a backward whose weight gradient comes
  out in the weight's own layout, so no copies); ``Conv2d`` as one grouped convolution with
  ``K`` groups (activations ``[B, K*C, H, W]`` between conv stages). Supports ``Sequential`` stacks of
  ``Flatten``, ``Linear``, ``ReLU``, ``Conv2d``, ``MaxPool2d`` and ``Identity`` (the ``mlp`` and ``cnn`` models).
* ``"func"``: ``torch.func.functional_call`` of the model under ``torch.func.vmap`` over the run dimension;
  any module without buffers.

``"auto"`` picks the faster measured one per model type (:data:`AUTO_BACKEND`). Models with BatchNorm (or
any buffer) are refused: the zero-weight rows that pad a batched step would enter the batch statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .models import SplitModel

__all__ = ["AUTO_BACKEND", "BACKENDS", "StackedModel"]

BACKENDS = ("auto", "bmm", "func")
# Faster back end per architecture, measured on CPU (one thread, benchmarks/batched_engine.py and a forward +
# backward of the stacked model): mlp, bmm 1.2-1.7x the throughput of func at K = 4 to 64; cnn, bmm about
# 1.1x func at K = 8 (both slower than a loop of K models on CPU). Not yet measured on a GPU.
AUTO_BACKEND = {"mlp": "bmm", "cnn": "bmm"}

_LEAF_TYPES = (nn.Flatten, nn.Linear, nn.ReLU, nn.Conv2d, nn.MaxPool2d, nn.Identity)


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]] | None:
    """The leaf modules of nested ``Sequential`` containers in forward order, or None if anything else."""
    if isinstance(module, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            sub = _leaves(child, f"{prefix}{name}.")
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(module, _LEAF_TYPES):
        return [(prefix, module)]
    return None


class _BatchedLinear(torch.autograd.Function):
    """``y[k] = x[k] @ w[k]^T + b[k]`` for ``x`` ``[K, B, I]``, ``w`` ``[K, O, I]``, ``b`` ``[K, O]`` or None.

    The backward computes ``grad_w = grad^T @ x`` directly in ``w``'s ``[K, O, I]`` layout (autograd's bmm
    backward would return a transposed view that costs a copy) and skips ``grad_x`` when ``x`` needs none.
    """

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        wt = w.transpose(1, 2)
        return torch.baddbmm(b.unsqueeze(1), x, wt) if b is not None else torch.bmm(x, wt)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        gx = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class StackedModel:
    """K copies of ``models[0]``'s architecture with the weights of ``models`` (one per run).

    ``params``: name -> leaf tensor ``[K, *shape]`` (``requires_grad``); ``forward(x)`` maps
    ``[K, B, *input_shape]`` to logits ``[K, B, C]``; ``model(k)`` returns run ``k``'s weights as a
    :class:`SplitModel`. ``backend``: one of :data:`BACKENDS`.
    """

    def __init__(self, models: list[SplitModel], backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
        base = models[0]
        bn = [type(m).__name__ for m in base.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bn or any(True for _ in base.buffers()):
            what = f"BatchNorm layers ({bn[0]})" if bn else "buffers"
            raise ValueError(
                f"model {base.arch!r} has {what}: the batched engine does not support them (the zero-weight rows "
                "that pad a batched step would enter the batch statistics); train it with TrainingRun / PruningEnv"
            )
        self.arch = base.arch
        self.num_runs = len(models)
        self.names = [n for n, _ in base.named_parameters()]
        with torch.no_grad():
            per_model = [dict(m.named_parameters()) for m in models]
            self.params = {n: torch.stack([p[n].detach() for p in per_model]).requires_grad_(True) for n in self.names}
        self._template = copy.deepcopy(base).to("meta")
        shallow, deep = _leaves(base.shallow, "shallow."), _leaves(base.deep, "deep.")
        leaves = shallow + deep if shallow is not None and deep is not None else None
        if backend == "auto":
            backend = AUTO_BACKEND.get(base.arch, "bmm") if leaves is not None else "func"
        if backend == "bmm" and leaves is None:
            raise ValueError(
                f"backend='bmm' does not support model {base.arch!r} (modules other than "
                f"{', '.join(t.__name__ for t in _LEAF_TYPES)} in Sequential stages); use 'func'"
            )
        self.backend = backend
        self._leaves = leaves
        self._forward: Callable[[dict, torch.Tensor], torch.Tensor] = (
            self._forward_bmm if backend == "bmm" else self._forward_func
        )

    def parameters(self) -> list[torch.Tensor]:
        """The stacked leaf parameters ``[K, *shape]``, in the model's ``named_parameters`` order."""
        return list(self.params.values())

    @property
    def param_count(self) -> int:
        """Parameters of one run's model."""
        return sum(p[0].numel() for p in self.params.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[K, B, C]`` of inputs ``[K, B, *input_shape]``."""
        return self._forward(self.params, x)

    __call__ = forward

    def model(self, k: int) -> SplitModel:
        """Run ``k``'s weights in a fresh :class:`SplitModel` (a copy, on the weights' device)."""
        model = copy.deepcopy(self._template).to_empty(device=self.parameters()[0].device)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][k])
        return model

    @torch.no_grad()
    def set_run(self, k: int, model: SplitModel) -> None:
        """Write ``model``'s weights (same architecture) into run ``k``'s rows, in place."""
        for name, p in model.named_parameters():
            self.params[name][k].copy_(p.detach())

    # -- back ends -----------------------------------------------------------------------------------------
    def _forward_func(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        template = self._template

        def one(p, xx):
            return torch.func.functional_call(template, p, (xx,))

        return torch.func.vmap(one)(params, x)

    def _forward_bmm(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        assert self._leaves is not None  # checked in __init__
        k, b = int(x.shape[0]), int(x.shape[1])
        h, grouped = x, False  # grouped: h is [B, K*C, H, W] (conv layout), else [K, B, ...]
        for prefix, m in self._leaves:
            if isinstance(m, nn.Linear):
                if grouped:
                    raise ValueError("backend='bmm': Linear after Conv2d needs a Flatten in between")
                h = _BatchedLinear.apply(h, params[prefix + "weight"], params.get(prefix + "bias"))
            elif isinstance(m, nn.Conv2d):
                if not grouped:
                    h = h.transpose(0, 1).reshape(b, k * h.shape[2], *h.shape[3:])
                    grouped = True
                w = params[prefix + "weight"]
                bias = params[prefix + "bias"].reshape(-1) if m.bias is not None else None
                h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), bias, m.stride, m.padding, m.dilation, m.groups * k)
            elif isinstance(m, nn.Flatten):
                if (m.start_dim, m.end_dim) != (1, -1):
                    raise ValueError(f"backend='bmm' supports Flatten(1, -1) only, got {m}")
                h = h.reshape(b, k, -1).transpose(0, 1) if grouped else h.reshape(k, b, -1)
                grouped = False
            elif isinstance(m, nn.ReLU):
                h = F.relu(h)
            elif isinstance(m, nn.MaxPool2d):
                if grouped:
                    h = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
                else:
                    out = F.max_pool2d(h.flatten(0, 1), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
                    h = out.view(k, b, *out.shape[1:])
        if grouped:
            raise ValueError("backend='bmm': the model must end in a Linear head")
        return h
