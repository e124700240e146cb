"""Task presets behind the registered env ids: dataset, model and training recipe as a :class:`RunConfig`;
:func:`register_task` adds the user's own (their data, their model) under a Gymnasium id."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import gymnasium

from prunegym.training import RunConfig, build_model, register_dataset, register_model, torch_generator
from prunegym.training.sources import dataset_source, registered_datasets

__all__ = ["TASKS", "ENV_IDS", "register_task", "task_config", "task_module"]

_FASHION_MNIST_MLP = RunConfig(
    dataset="fashion_mnist",
    model="mlp",
    model_kwargs={"hidden": (256,)},
    epochs=15,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    lr_schedule="onecycle",
)

# id suffix -> (task name, RunConfig defaults, nondeterministic)
TASKS: dict[str, RunConfig] = {
    # A whole episode takes about a second on one CPU core: 4,000 samples, 32 features, 8 imbalanced classes.
    "synthetic-mlp": RunConfig(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"hidden": (64,)},
        epochs=10,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        lr_schedule="onecycle",
        val_size=1000,
    ),
    # Fashion-MNIST, 55,000 train / 5,000 validation / 10,000 test; MLP 784-256-10 (about 0.5 s an epoch).
    "fashion_mnist-mlp": _FASHION_MNIST_MLP,
    # The regimes' task (issue 23): the same MLP on 10,000 training / 5,000 validation samples, 20 epochs.
    "fashion_mnist-mlp-10k": _FASHION_MNIST_MLP.replace(epochs=20, train_size=10_000, val_size=5_000),
    "mnist-mlp-10k": _FASHION_MNIST_MLP.replace(dataset="mnist", epochs=20, train_size=10_000, val_size=5_000),
    # Small conv net (32 and 64 channels, fc 128): about 2,500 images/s on 2 CPU cores.
    "fashion_mnist-cnn": RunConfig(
        dataset="fashion_mnist",
        model="cnn",
        epochs=10,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule="onecycle",
    ),
    "mnist-cnn": RunConfig(
        dataset="mnist",
        model="cnn",
        epochs=10,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule="onecycle",
    ),
    # InfoBatch's CIFAR recipe: SGD momentum 0.9, wd 5e-4, one-cycle max 0.05 pct 0.3, label smoothing 0.1,
    # batch 128, 200 epochs; ResNet-18 CIFAR variant split after layer2 (where PFB's official ResNet splits).
    "cifar10-resnet18": RunConfig(
        dataset="cifar10",
        model="resnet18",
        epochs=200,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        label_smoothing=0.1,
        lr_schedule="onecycle",
        pct_start=0.3,
        device="auto",
    ),
    "cifar100-resnet18": RunConfig(
        dataset="cifar100",
        model="resnet18",
        epochs=200,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        label_smoothing=0.1,
        lr_schedule="onecycle",
        pct_start=0.3,
        device="auto",
    ),
}

# registered id -> (task name, nondeterministic)
ENV_IDS: dict[str, tuple[str, bool]] = {
    "prunegym/Synthetic-MLP-v0": ("synthetic-mlp", False),
    "prunegym/FashionMNIST-MLP-v0": ("fashion_mnist-mlp", False),
    "prunegym/FashionMNIST-CNN-v0": ("fashion_mnist-cnn", False),
    "prunegym/MNIST-CNN-v0": ("mnist-cnn", False),
    "prunegym/CIFAR10-ResNet18-v0": ("cifar10-resnet18", True),
    "prunegym/CIFAR100-ResNet18-v0": ("cifar100-resnet18", True),
    "prunegym/FashionMNIST-Noisy-v0": ("fashion_mnist-mlp-10k", False),
    "prunegym/FashionMNIST-LT-v0": ("fashion_mnist-mlp-10k", False),
    "prunegym/MNIST-Noisy-v0": ("mnist-mlp-10k", False),
    "prunegym/MNIST-LT-v0": ("mnist-mlp-10k", False),
}

# The env kwargs an id sets (a caller's kwargs override them): the regimes' instance distributions (issue 23).
_NOISY = {"label_noise": (0.0, 0.5), "compute_budget": (0.25, 0.75), "reward": "accuracy"}
_LONG_TAIL = {"imbalance": (1.0, 100.0), "compute_budget": (0.25, 0.75), "reward": "accuracy"}
ID_KWARGS: dict[str, dict[str, Any]] = {
    "prunegym/FashionMNIST-Noisy-v0": _NOISY,
    "prunegym/FashionMNIST-LT-v0": _LONG_TAIL,
    "prunegym/MNIST-Noisy-v0": _NOISY,
    "prunegym/MNIST-LT-v0": _LONG_TAIL,
}


_USER_TASKS: dict[str, str | None] = {}  # env id of a registered task -> the module that registered it


def task_config(task: str) -> RunConfig:
    """The preset :class:`RunConfig` of ``task`` (a copy)."""
    if task not in TASKS:
        raise ValueError(
            f"unknown task {task!r}; allowed: {', '.join(TASKS)} (a task of register_task exists "
            "once the module that registers it is imported, e.g. with --gym-packages MODULE)"
        )
    return TASKS[task].replace()


def task_module(env_id: str) -> str | None:
    """The importable module that registered the task ``env_id`` with :func:`register_task` (None for the
    presets, for ids registered from ``__main__`` and for unknown ids)."""
    return _USER_TASKS.get(env_id)


def register_task(
    env_id: str,
    dataset: Any,
    model: str | Callable = "mlp",
    model_split: str | None = None,
    *,
    num_classes: int | None = None,
    nondeterministic: bool = False,
    **run_config: Any,
) -> str:
    """Register a Gymnasium id (``gymnasium.make(env_id)``) for a training run of the user's data and model.

    ``dataset``: a name (a preset such as ``"fashion_mnist"``, ``"torchvision:KMNIST"``, or one registered
    with :func:`~prunegym.training.register_dataset`), or the data themselves (``{"train": (x, y), "val":
    (x, y), "test": (x, y)}``, val and test optional; a map-style ``Dataset``), registered as dataset
    ``env_id`` (``num_classes`` as there). ``model``: a name (a preset, ``"torchvision:resnet18"``, or one
    registered with :func:`~prunegym.training.register_model`), or a factory ``(input_shape, num_classes,
    generator) -> nn.Module`` whose named children are the stages, registered as model ``env_id``;
    ``model_split``: the child after which the shallow part ends. ``run_config``: any other
    :class:`RunConfig` field (``epochs``, ``batch_size``, ``lr``, ``val_size``, ``streaming``, ...).

    Data the process holds (registered or given here) are checked against the model now: wrong shapes,
    labels or split points raise a one-line ``ValueError`` (and tensors with NaN or inf, or val / test classes
    no training sample has; see :func:`~prunegym.training.register_dataset`). The env keeps the presets'
    checks, seeding and replay, and their ``vector_entry_point``, :class:`PruningVectorEnv`
    (``gym.make_vec(env_id, num_envs=K, vectorization_mode="vector_entry_point")``, ``--batched``; a task
    that streams its data, e.g. a ``Dataset``, needs ``vectorization_mode="sync"``). A replay (or a worker
    process) needs the module that calls this imported (``--gym-packages``).
    Returns ``env_id``. Registering the same id again replaces the task.
    """
    if env_id in ENV_IDS:
        raise ValueError(f"env id {env_id!r} is a preset; choose another id (e.g. 'my/Task-v0')")
    names = {f.name for f in fields(RunConfig)} - {"dataset", "model", "model_split"}
    bad = sorted(set(run_config) - names)
    if bad:
        raise ValueError(f"unknown RunConfig field(s) {', '.join(bad)}; allowed: {', '.join(sorted(names))}")
    data_name = dataset if isinstance(dataset, str) else register_dataset(env_id, dataset, num_classes=num_classes)
    model_name = model if isinstance(model, str) else register_model(env_id, model, split=model_split)
    cfg = RunConfig(dataset=data_name, model=model_name, model_split=model_split, **run_config)
    if data_name in registered_datasets():  # check the model on the data the process holds
        src = dataset_source(data_name)
        build_model(
            model_name,
            src.input_shape,
            src.num_classes,
            torch_generator(cfg.seed, "init"),
            split=model_split,
            **cfg.model_kwargs,
        )
    module = sys._getframe(1).f_globals.get("__name__")
    if env_id in gymnasium.registry and env_id in _USER_TASKS:
        del gymnasium.registry[env_id]  # our own earlier registration: replace it without gymnasium's warning
    gymnasium.register(
        id=env_id,
        entry_point="prunegym.envs.env:PruningEnv",
        vector_entry_point="prunegym.envs.vector_env:PruningVectorEnv",
        kwargs={"task": env_id},
        nondeterministic=nondeterministic,
    )
    TASKS[env_id] = cfg
    _USER_TASKS[env_id] = module if module not in (None, "__main__") else None
    return env_id
