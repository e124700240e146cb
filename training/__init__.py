"""prunegym.training: datasets, split models, the pruned epoch engine, the score table and the compute meter
(and :func:`progress_lr`, which drives any PyTorch LR scheduler by training progress).

This package knows nothing of gymnasium or of any pruning method: a caller passes an :class:`EpochPlan`
to :meth:`TrainingRun.run_epoch` and gets an :class:`EpochResult` back. :class:`BatchedTrainingRun` advances
K runs of one task in lockstep as one stacked model (one plan and one result per run).
"""

from .batched_run import BatchedTrainingRun
from .budget import ComputeBudget, plan_flops, trim_plan
from .checks import check_fraction
from .config import OPTIMIZERS, RunConfig
from .data import (
    DATASETS,
    DatasetMissingError,
    DataSplits,
    SplitIndices,
    data_root,
    make_synthetic,
    split_indices,
)
from .flops import PassFlops, measure_flops
from .learning_rate import SCHEDULES, ProgressLR, lr_at, progress_lr
from .loading import load_run_data, load_splits
from .meter import ComputeMeter
from .models import MODELS, SplitModel, build_model, register_model, split_points
from .plan import EpochPlan, EpochResult, MixupSpec, PassCounts, Selector, selector_flops
from .provenance import float_path, float_path_env, runtime, runtime_differences, versions
from .run import EvalResult, TrainingRun, resolve_device
from .run_state import RunState, TaskShape
from .scores import ScoreTable
from .seeding import DRAWN_SEED_LIMIT, SEED_LIMIT, check_seed, derive_seed, numpy_generator, torch_generator
from .sources import register_dataset
from .step import finish_epoch, plan_epoch, step_run, step_runs

__all__ = [
    "ComputeBudget",
    "DATASETS",
    "MODELS",
    "OPTIMIZERS",
    "SCHEDULES",
    "DRAWN_SEED_LIMIT",
    "SEED_LIMIT",
    "BatchedTrainingRun",
    "ComputeMeter",
    "DataSplits",
    "DatasetMissingError",
    "EpochPlan",
    "EpochResult",
    "EvalResult",
    "MixupSpec",
    "PassCounts",
    "PassFlops",
    "ProgressLR",
    "RunState",
    "RunConfig",
    "ScoreTable",
    "Selector",
    "SplitIndices",
    "SplitModel",
    "TaskShape",
    "TrainingRun",
    "build_model",
    "check_fraction",
    "check_seed",
    "data_root",
    "derive_seed",
    "finish_epoch",
    "float_path",
    "float_path_env",
    "load_run_data",
    "load_splits",
    "lr_at",
    "make_synthetic",
    "measure_flops",
    "numpy_generator",
    "plan_epoch",
    "plan_flops",
    "progress_lr",
    "register_dataset",
    "register_model",
    "resolve_device",
    "runtime",
    "runtime_differences",
    "selector_flops",
    "split_indices",
    "split_points",
    "step_run",
    "step_runs",
    "torch_generator",
    "trim_plan",
    "versions",
]
