"""Reference accuracy of a full-data run of a task and seed, cached in memory and on disk (atomically).

A disk entry is used only if the config stored in it is the config asked for; a cache folder that cannot
be written is warned about once (``RuntimeWarning``) and the value is kept in memory: the episode goes on.
:func:`cached_json` is that mechanism, also used for :class:`~prunegym.envs.RelativeReward`'s reference
episodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prunegym.baselines import make_pruner
from prunegym.training import RunConfig, TrainingRun, resolve_device, step_run
from prunegym.training.io import write_json_atomic
from prunegym.training.model_sources import registration_version
from prunegym.training.sources import dataset_source, registered_datasets

__all__ = ["cache_dir", "cached_json", "reference_accuracy", "registration_token"]

T = TypeVar("T")

_MEMORY: dict[str, float] = {}  # cache file path -> accuracy (a new PRUNEGYM_CACHE gets its own file)
_WARNED: set[str] = set()  # cache folders already warned about


def cache_dir() -> Path:
    """``$PRUNEGYM_CACHE`` or ``~/.cache/prunegym``."""
    return Path(os.environ.get("PRUNEGYM_CACHE", Path.home() / ".cache" / "prunegym")).expanduser()


def registration_token(config: RunConfig) -> str | None:
    """None for a config of presets and torchvision names; otherwise the versions of its registered data
    and model (a re-registration under the same name gets a new token)."""
    data = dataset_source(config.dataset).version if config.dataset in registered_datasets() else None
    model = registration_version(config.model)
    return None if data is None and model is None else f"{data}/{model}"


def reference_accuracy(config: RunConfig) -> float:
    """Final validation accuracy in [0, 1] of the full-data run of ``config`` (same task, recipe and seed).

    The run is exactly a ``PruningEnv`` episode with the ``full`` pruner (same pruner generator, same
    shuffles), so on CPU the reference equals that episode's final ``info["val_accuracy"]``. Cached in
    memory and in ``cache_dir() / "reference" / <hash of the config>.json``. A run on data or a model
    registered in this process (``register_dataset`` / ``register_model``) is cached in memory only, for
    that registration: a name alone does not identify the data behind it.
    """
    cfg = config.to_dict()
    cfg.pop("data_root", None)  # where the files live does not change the run
    cfg.pop("streaming", None)  # nor does the path the data take (the streaming path trains identically)
    cfg.pop("num_workers", None)
    if not cfg.get("dataset_kwargs"):
        cfg.pop("dataset_kwargs", None)  # keeps the keys of configs written before the field existed
    cfg["device"] = str(resolve_device(config.device))  # "auto" resolves differently on different machines
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_dir() / "reference" / f"{key}.json"
    token = registration_token(config)
    mem_key = str(path) if token is None else f"{key}@{token}"

    def run_reference() -> float:
        run = TrainingRun(config)
        pruner = make_pruner("full")
        pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))  # as PruningEnv.reset
        while not run.done:
            step_run(run, pruner, {"prune_ratio": 0.0})
        return run.evaluate("val").accuracy

    return cached_json(
        _MEMORY,
        mem_key,
        None if token is not None else path,  # registered data or model: a name alone does not identify them
        ("config", json.loads(json.dumps(cfg, sort_keys=True, default=str))),
        ("val_accuracy", float),
        run_reference,
        what="reference cache",
        kept="the reference",
    )


def cached_json(
    memory: dict[str, Any],
    mem_key: str,
    path: Path | None,
    key: tuple[str, Any],
    value: tuple[str, Callable[[Any], T]],
    compute: Callable[[], T],
    *,
    what: str,
    kept: str,
) -> T:
    """``memory[mem_key]``, else the entry at ``path`` whose field ``key[0]`` equals ``key[1]`` (a JSON value;
    its field ``value[0]`` read through ``value[1]``), else ``compute()``, kept in ``memory`` and written to
    ``path`` atomically as ``{key[0]: key[1], value[0]: result}``. ``path`` None: memory only. A corrupt or
    foreign entry is computed again; a folder that cannot be written is warned about once
    (``RuntimeWarning``: "``what`` ... cannot be written ...; keeping ``kept`` in memory only")."""
    if mem_key in memory:
        return memory[mem_key]
    if path is not None and path.is_file():
        try:
            entry = json.loads(path.read_text())
            if entry[key[0]] == key[1]:
                memory[mem_key] = value[1](entry[value[0]])
                return memory[mem_key]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a corrupt, unreadable or foreign cache entry is recomputed
    result = compute()
    memory[mem_key] = result
    if path is None:
        return result
    try:
        write_json_atomic(path, {key[0]: key[1], value[0]: result})
    except OSError as exc:
        folder = str(path.parent)
        if folder not in _WARNED:
            _WARNED.add(folder)
            why = f"{type(exc).__name__}: {exc.strerror or exc}"
            warnings.warn(
                f"{what} {folder!r} cannot be written ({why}); keeping {kept} in memory only "
                "(set PRUNEGYM_CACHE to a writable folder)",
                RuntimeWarning,
                stacklevel=3,
            )
    return result
