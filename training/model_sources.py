"""Models beyond the presets: the user's factories (registered by name) and ``torchvision.models`` by name.

A factory is ``factory(input_shape, num_classes, generator, **model_kwargs) -> nn.Module`` whose named children,
applied in order, are the model (its stages; ``model_split`` names the child after which the shallow part
ends; default: the first child). ``"torchvision:NAME"`` builds ``torchvision.models.get_model(NAME,
weights=None, num_classes=...)`` and takes its named children as the stages; torchvision's ``forward`` flattens
between the pooling and the classifier, so when the children alone do not reproduce ``forward``, an
``nn.Flatten(1)`` is put in front of the last child (the stage keeps that child's name). Either way the
stages are checked once against the model's own ``forward`` on a random batch: a model whose ``forward`` does
more than its children (MobileNet's and DenseNet's functional pooling, ViT's class token) cannot be split and
gets an error saying so.

Initialisation: the model's *own* scheme (PyTorch's layer defaults, torchvision's kaiming-normal convolutions,
any custom init in the factory), reproduced from the run's generator: the factory runs inside
``torch.random.fork_rng`` with the CPU default generator seeded from a draw of ``generator``, and the global
RNG state is restored afterwards, so callers see it untouched and the same seed gives the same weights.
"""

from __future__ import annotations

import inspect
import itertools
from collections import OrderedDict
from collections.abc import Callable

import torch
import torchvision
from torch import nn

__all__ = [
    "MODELS",
    "TORCHVISION_PREFIX",
    "allowed_models",
    "build_stages",
    "register_model",
    "registered_models",
    "registration_version",
]

MODELS = ("mlp", "cnn", "resnet18")  # the presets (built in prunegym.training.models)
TORCHVISION_PREFIX = "torchvision:"
Factory = Callable[..., nn.Module]
_FACTORIES: dict[str, tuple[Factory, str | None]] = {}
_VERSIONS: dict[str, int] = {}
_COUNTER = itertools.count(1)
_CHECKED: dict[tuple, bool] = {}  # (arch, input shape, classes, kwargs) -> whether a flatten is inserted


def registered_models() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def allowed_models() -> str:
    """The allowed model names, for error messages."""
    reg = registered_models()
    return (
        ", ".join(MODELS) + f", {TORCHVISION_PREFIX}<name> (e.g. torchvision:resnet18), or a name registered "
        "with register_model" + (f" (registered: {', '.join(reg)})" if reg else "")
    )


def registration_version(name: str) -> int | None:
    """The registration of model ``name`` (a new number after each ``register_model``); None if unregistered."""
    return _VERSIONS.get(name)


def register_model(name: str, factory: Factory, split: str | None = None) -> str:
    """Register ``factory`` (see the module docstring) as model ``name`` with default split point ``split``
    (None: after the first child); returns ``name``. Registering a name again replaces the factory."""
    if not isinstance(name, str) or not name or name in MODELS or name.startswith(TORCHVISION_PREFIX):
        raise ValueError(
            f"model name {name!r} is not allowed: use a non-empty string that is not a preset "
            f"({', '.join(MODELS)}) and does not start with {TORCHVISION_PREFIX!r}"
        )
    if not callable(factory):
        raise ValueError(
            f"model {name!r}: factory {factory!r} is not callable; expected "
            "factory(input_shape, num_classes, generator) -> nn.Module"
        )
    try:
        inspect.signature(factory).bind((1,), 2, torch.Generator())
    except TypeError as exc:
        raise ValueError(f"model {name!r}: factory must accept (input_shape, num_classes, generator): {exc}") from exc
    except ValueError:  # no signature (a builtin): trust it
        pass
    _FACTORIES[name] = (factory, split)
    _VERSIONS[name] = next(_COUNTER)
    for key in [k for k in _CHECKED if k[0] == name]:
        del _CHECKED[key]
    return name


def _torchvision_builder(arch: str):
    name = arch[len(TORCHVISION_PREFIX) :]
    allowed = torchvision.models.list_models(module=torchvision.models)
    if name not in allowed:
        raise ValueError(
            f"unknown model {arch!r}; allowed: torchvision:<one of {', '.join(allowed)}> "
            "(torchvision's classification models)"
        )

    def build(input_shape, num_classes, generator, **kwargs):
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)

    return build


def _factory(arch: str) -> tuple[Factory, str | None]:
    if arch.startswith(TORCHVISION_PREFIX):
        return _torchvision_builder(arch), None
    if arch not in _FACTORIES:
        raise ValueError(f"unknown model {arch!r}; allowed: {allowed_models()}")
    return _FACTORIES[arch]


def _construct(factory: Factory, arch: str, input_shape, num_classes, generator, kwargs) -> nn.Module:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        try:
            model = factory(tuple(input_shape), num_classes, generator, **kwargs)
        except TypeError as exc:
            raise ValueError(f"model {arch!r}: building it with model_kwargs {kwargs!r} failed: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {arch!r}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def _first_line(exc: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    return f"{type(exc).__name__}: {text[:300]}"


def _check(model: nn.Module, stages: OrderedDict[str, nn.Module], arch: str, input_shape, num_classes):
    """Whether ``stages`` in order reproduce ``model``'s forward (with or without a flatten before the last);
    returns the flatten flag, or raises a one-line ``ValueError``."""
    x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                ref = model(x)
            except Exception as exc:
                tv = arch.startswith(TORCHVISION_PREFIX)
                hint = " (torchvision models take 3-channel images [3, H, W])" if tv else ""
                raise ValueError(
                    f"model {arch!r} cannot take samples of shape {tuple(input_shape)}{hint}: {_first_line(exc)}"
                ) from None
            if not (isinstance(ref, torch.Tensor) and tuple(ref.shape) == (2, num_classes)):
                shape = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
                raise ValueError(
                    f"model {arch!r} returns {shape} for a batch of 2; expected logits "
                    f"[batch, num_classes] = (2, {num_classes})"
                )
            items = list(stages.values())
            for flatten in (False, True) if arch.startswith(TORCHVISION_PREFIX) else (False,):
                h = x
                try:
                    for i, m in enumerate(items):
                        h = m(h.flatten(1) if flatten and i == len(items) - 1 else h)
                except Exception:
                    continue
                same = isinstance(h, torch.Tensor) and h.shape == ref.shape
                if same and torch.allclose(h, ref, rtol=1e-4, atol=1e-5):
                    return flatten
    finally:
        model.train(was_training)
    raise ValueError(
        f"model {arch!r}: its named children ({', '.join(stages)}) applied in order do not reproduce "
        "its forward, so it cannot be split into stages; put everything forward does into children "
        "(e.g. nn.Flatten(), pooling modules)"
    )


def build_stages(
    arch: str, input_shape, num_classes: int, generator: torch.Generator, **kwargs
) -> tuple[OrderedDict[str, nn.Module], str]:
    """``(stages, default split)`` of a registered or torchvision model, built on the CPU (module docstring)."""
    factory, default_split = _factory(arch)
    model = _construct(factory, arch, input_shape, num_classes, generator, kwargs)
    stages = OrderedDict(model.named_children())
    if len(stages) < 2:
        raise ValueError(
            f"model {arch!r} has {len(stages)} named child(ren) ({', '.join(stages) or 'none'}); "
            "a split model needs at least two stages (shallow and deep)"
        )
    key = (arch, tuple(input_shape), int(num_classes), repr(sorted(kwargs.items())))
    if key not in _CHECKED:
        _CHECKED[key] = _check(model, stages, arch, input_shape, num_classes)
    if _CHECKED[key]:
        last = next(reversed(stages))
        stages[last] = nn.Sequential(nn.Flatten(1), stages[last])
    return stages, default_split or next(iter(stages))
