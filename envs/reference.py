"""Reference accuracy of a full-data run of a task and seed, cached in memory and on disk (atomically)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from prunegym.training import RunConfig, TrainingRun

__all__ = ["cache_dir", "reference_accuracy", "write_json_atomic"]

_MEMORY: dict[str, float] = {}


def cache_dir() -> Path:
    """``$PRUNEGYM_CACHE`` or ``~/.cache/prunegym``."""
    return Path(os.environ.get("PRUNEGYM_CACHE", Path.home() / ".cache" / "prunegym")).expanduser()


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def reference_accuracy(config: RunConfig) -> float:
    """Final validation accuracy of the full-data run of ``config`` (same task, recipe and seed)."""
    cfg = config.to_dict()
    cfg.pop("data_root", None)  # where the files live does not change the run
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:24]
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / "reference" / f"{key}.json"
    if path.exists():
        try:
            _MEMORY[key] = float(json.loads(path.read_text())["val_accuracy"])
            return _MEMORY[key]
        except (ValueError, KeyError):
            pass  # a corrupt cache entry is recomputed
    run = TrainingRun(config)
    while not run.done:
        run.run_epoch(run.full_plan())
    acc = run.evaluate("val").accuracy
    write_json_atomic(path, {"config": cfg, "val_accuracy": acc})
    _MEMORY[key] = acc
    return acc
