"""Classifiers split as ``deep(shallow(x))`` at a configurable point.

Every model is a :class:`SplitModel` with two ``nn.Sequential`` parts built from named stages, so a pruner
can run ``shallow`` on a whole batch and ``deep`` only on the rows it keeps (PFB). A model name is a preset
(:data:`MODELS`), ``"torchvision:NAME"`` or a name given to :func:`register_model` (see
:mod:`prunegym.training.model_sources`). Preset parameters are initialised with PyTorch's default schemes
from an explicit generator (the model is built on the meta device); other models get their own scheme
reproduced from the generator. Building a model never changes the global RNG state.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .model_sources import MODELS, TORCHVISION_PREFIX, allowed_models, build_stages, register_model, registered_models

__all__ = ["MODELS", "SplitModel", "allowed_models", "build_model", "is_model_name", "register_model", "split_points"]

# resnet18 after layer2: where PFB's official ResNet ends its shallow part (dywu98/OnlineDataPrune, commit 2a749d9,
# models/resnet.py lines 284-300: _forward_impl_phase1 runs the stem, layer1 and layer2; lines 302-318 the rest)
_DEFAULT_SPLIT = {"mlp": "hidden1", "cnn": "block1", "resnet18": "layer2"}


class SplitModel(nn.Module):
    """``forward(x) = deep(shallow(x))``; ``stage_names`` lists every possible split point in order."""

    def __init__(self, stages: OrderedDict[str, nn.Module], split: str, arch: str):
        super().__init__()
        names = list(stages)
        if split not in names[:-1]:
            raise ValueError(f"split {split!r} is not a split point of {arch!r}; allowed: {', '.join(names[:-1])}")
        k = names.index(split) + 1
        items = list(stages.items())
        self.shallow = nn.Sequential(OrderedDict(items[:k]))
        self.deep = nn.Sequential(OrderedDict(items[k:]))
        self.arch = arch
        self.split = split
        self.stage_names = tuple(names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deep(self.shallow(x))


def _mlp_stages(input_shape, num_classes, hidden=(256,)):
    in_dim = math.prod(input_shape)
    stages = OrderedDict()
    prev = in_dim
    for i, h in enumerate(hidden, start=1):
        layers = [nn.Flatten()] if i == 1 else []
        stages[f"hidden{i}"] = nn.Sequential(*layers, nn.Linear(prev, h), nn.ReLU())
        prev = h
    stages["head"] = (
        nn.Linear(prev, num_classes) if hidden else nn.Sequential(nn.Flatten(), nn.Linear(prev, num_classes))
    )
    return stages


def _cnn_stages(input_shape, num_classes):
    c, h, w = input_shape
    flat = 64 * (h // 4) * (w // 4)
    return OrderedDict(
        block1=nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        block2=nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        fc=nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU()),
        head=nn.Linear(128, num_classes),
    )


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _resnet18_stages(input_shape, num_classes):
    """ResNet-18, CIFAR variant (3x3 stem, stride 1, no max-pool), as in the InfoBatch / PFB recipes."""
    c = input_shape[0]
    stages = OrderedDict(stem=nn.Sequential(nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()))
    in_planes = 64
    for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        blocks = [_BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)]
        in_planes = planes
        stages[f"layer{i}"] = nn.Sequential(*blocks)
    stages["head"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))
    return stages


_BUILDERS = {"mlp": _mlp_stages, "cnn": _cnn_stages, "resnet18": _resnet18_stages}


def is_model_name(name) -> bool:
    """Whether ``name`` names a preset, a ``torchvision:`` model or a registered factory."""
    return isinstance(name, str) and (
        name in MODELS
        or name in registered_models()
        or (name.startswith(TORCHVISION_PREFIX) and len(name) > len(TORCHVISION_PREFIX))
    )


def split_points(arch: str, input_shape: tuple[int, ...] | None = None, num_classes: int = 10) -> tuple[str, ...]:
    """Names of the stages after which ``arch`` can be split (``input_shape``: one sample, needed for
    registered and torchvision models; default ``(3, 32, 32)``)."""
    if arch in _BUILDERS:
        with torch.device("meta"):
            stages = _BUILDERS[arch]((3, 32, 32) if arch != "mlp" else (8,), 10)
        return tuple(stages)[:-1]
    if not is_model_name(arch):
        raise ValueError(f"unknown model {arch!r}; allowed: {allowed_models()}")
    stages, _ = build_stages(arch, input_shape or (3, 32, 32), num_classes, torch.Generator().manual_seed(0))
    return tuple(stages)[:-1]


@torch.no_grad()
def _init_from(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation (kaiming-uniform a=sqrt(5), uniform bias) drawn from ``generator``."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


def build_model(
    arch: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    generator: torch.Generator,
    split: str | None = None,
    device: torch.device | str = "cpu",
    **kwargs,
) -> SplitModel:
    """Build ``arch`` for inputs of ``input_shape`` (one sample) split after stage ``split``.

    A preset is created on the meta device (no RNG use), materialised on ``device`` and initialised from
    ``generator`` (a CPU generator; parameters are drawn on the CPU and copied, so CPU and GPU runs of the
    same seed start from the same weights). Registered and torchvision models: see
    :mod:`prunegym.training.model_sources` (``kwargs`` go to the factory).
    """
    if arch not in _BUILDERS:
        if not is_model_name(arch):
            raise ValueError(f"unknown model {arch!r}; allowed: {allowed_models()}")
        stages, default = build_stages(arch, tuple(input_shape), num_classes, generator, **kwargs)
        return SplitModel(stages, split or default, arch).to(device)
    with torch.device("meta"):
        stages = _BUILDERS[arch](tuple(input_shape), num_classes, **kwargs)
        model = SplitModel(stages, split or _DEFAULT_SPLIT[arch], arch)
    model = model.to_empty(device="cpu")
    _init_from(model, generator)
    return model.to(device)
