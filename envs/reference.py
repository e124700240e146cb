"""Reference accuracy of a full-data run of a task and seed, cached in memory and on disk (atomically).

A disk entry is used only if the config stored in it is the config asked for; a cache folder that cannot
be written is warned about once (``RuntimeWarning``) and the value is kept in memory: the episode goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from prunegym.baselines import make_pruner
from prunegym.training import RunConfig, TrainingRun, resolve_device
from prunegym.training.atomic import write_text_atomic

__all__ = ["cache_dir", "reference_accuracy", "write_json_atomic"]

_MEMORY: dict[str, float] = {}  # cache file path -> accuracy (a new PRUNEGYM_CACHE gets its own file)
_WARNED: set[str] = set()  # cache folders already warned about


def cache_dir() -> Path:
    """``$PRUNEGYM_CACHE`` or ``~/.cache/prunegym``."""
    return Path(os.environ.get("PRUNEGYM_CACHE", Path.home() / ".cache" / "prunegym")).expanduser()


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def reference_accuracy(config: RunConfig) -> float:
    """Final validation accuracy in [0, 1] of the full-data run of ``config`` (same task, recipe and seed).

    The run is exactly a ``PruningEnv`` episode with the ``full`` pruner (same pruner generator, same
    shuffles), so on CPU the reference equals that episode's final ``info["val_accuracy"]``. Cached in
    memory and in ``cache_dir() / "reference" / <hash of the config>.json``.
    """
    cfg = config.to_dict()
    cfg.pop("data_root", None)  # where the files live does not change the run
    cfg["device"] = str(resolve_device(config.device))  # "auto" resolves differently on different machines
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = cache_dir() / "reference" / f"{key}.json"
    mem_key = str(path)
    if mem_key in _MEMORY:
        return _MEMORY[mem_key]
    if path.exists():
        try:
            entry = json.loads(path.read_text())
            if entry["config"] == json.loads(json.dumps(cfg, sort_keys=True, default=str)):
                _MEMORY[mem_key] = float(entry["val_accuracy"])
                return _MEMORY[mem_key]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a corrupt, unreadable or foreign cache entry is recomputed
    run = TrainingRun(config)
    pruner = make_pruner("full")
    pruner.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))  # as PruningEnv.reset
    while not run.done:
        result = run.run_epoch(pruner.plan(run.epoch, run.scores, {"prune_ratio": 0.0}))
        pruner.update(result, run.scores)
    acc = run.evaluate("val").accuracy
    _MEMORY[mem_key] = acc
    try:
        write_json_atomic(path, {"config": cfg, "val_accuracy": acc})
    except OSError as exc:
        folder = str(path.parent)
        if folder not in _WARNED:
            _WARNED.add(folder)
            why = f"{type(exc).__name__}: {exc.strerror or exc}"
            warnings.warn(f"reference cache {folder!r} cannot be written ({why}); keeping the reference in memory "
                          "only (set PRUNEGYM_CACHE to a writable folder)", RuntimeWarning, stacklevel=2)
    return acc
