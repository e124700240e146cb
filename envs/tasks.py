"""Task presets behind the registered env ids: dataset, model and training recipe as a :class:`RunConfig`."""
from __future__ import annotations

from prunegym.training import RunConfig

__all__ = ["TASKS", "ENV_IDS", "task_config"]

# id suffix -> (task name, RunConfig defaults, nondeterministic)
TASKS: dict[str, RunConfig] = {
    # A whole episode takes about a second on one CPU core: 4,000 samples, 32 features, 8 imbalanced classes.
    "synthetic-mlp": RunConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": (64,)}, epochs=10,
                               batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                               lr_schedule="onecycle", val_size=1000),
    # Fashion-MNIST, 55,000 train / 5,000 validation / 10,000 test; MLP 784-256-10 (about 0.5 s an epoch).
    "fashion_mnist-mlp": RunConfig(dataset="fashion_mnist", model="mlp", model_kwargs={"hidden": (256,)},
                                   epochs=15, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                                   weight_decay=5e-4, lr_schedule="onecycle"),
    # Small conv net (32 and 64 channels, fc 128): about 2,500 images/s on 2 CPU cores.
    "fashion_mnist-cnn": RunConfig(dataset="fashion_mnist", model="cnn", epochs=10, batch_size=128, optimizer="sgd",
                                   lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, lr_schedule="onecycle"),
    "mnist-cnn": RunConfig(dataset="mnist", model="cnn", epochs=10, batch_size=128, optimizer="sgd", lr=0.05,
                           momentum=0.9, nesterov=True, weight_decay=5e-4, lr_schedule="onecycle"),
    # InfoBatch's CIFAR recipe: SGD momentum 0.9, wd 5e-4, one-cycle max 0.05 pct 0.3, label smoothing 0.1,
    # batch 128, 200 epochs; ResNet-18 CIFAR variant split after layer1.
    "cifar10-resnet18": RunConfig(dataset="cifar10", model="resnet18", epochs=200, batch_size=128, optimizer="sgd",
                                  lr=0.05, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                                  lr_schedule="onecycle", pct_start=0.3, device="auto"),
    "cifar100-resnet18": RunConfig(dataset="cifar100", model="resnet18", epochs=200, batch_size=128, optimizer="sgd",
                                   lr=0.05, momentum=0.9, weight_decay=5e-4, label_smoothing=0.1,
                                   lr_schedule="onecycle", pct_start=0.3, device="auto"),
}

# registered id -> (task name, nondeterministic)
ENV_IDS: dict[str, tuple[str, bool]] = {
    "prunegym/Synthetic-MLP-v0": ("synthetic-mlp", False),
    "prunegym/FashionMNIST-MLP-v0": ("fashion_mnist-mlp", False),
    "prunegym/FashionMNIST-CNN-v0": ("fashion_mnist-cnn", False),
    "prunegym/MNIST-CNN-v0": ("mnist-cnn", False),
    "prunegym/CIFAR10-ResNet18-v0": ("cifar10-resnet18", True),
    "prunegym/CIFAR100-ResNet18-v0": ("cifar100-resnet18", True),
}


def task_config(task: str) -> RunConfig:
    """The preset :class:`RunConfig` of ``task`` (a copy)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task].replace()
