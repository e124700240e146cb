"""The results row schema and ``results.jsonl``: one JSON object per line, one line per episode.

Appending is atomic: under an exclusive ``flock`` on the file's folder the existing lines are read, the new ones
added, the whole written to a temporary file in the same folder, fsynced and moved over the original with
``os.replace``. A reader never sees half a line, an interrupted writer leaves the old file intact, and two
processes appending at once both keep their rows.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from prunegym.training.io import write_text_atomic

__all__ = ["ROW_FIELDS", "SCHEMA", "EpisodeRow", "append_rows", "canonical_json", "completed_keys", "is_failed",
           "read_rows", "row_key", "to_jsonable"]

SCHEMA = "prunegym.results/1"


@dataclass
class EpisodeRow:
    """One evaluation episode of one policy on one seed (schema ``prunegym.results/1``).

    Identity: ``env_id`` (registered id, no module prefix); ``env_kwargs``: the env arguments the caller
    gave (shared by every policy of a comparison; the pruner is the policy's business, see ``env_config``);
    ``env_config``: every ``PruningEnv`` argument of the episode, pruner included (``replay`` needs it with
    ``seed`` and ``actions``); ``policy``: its label (a baseline's name, an agent's algo such as ``ppo``, or a
    custom name); ``policy_type``: ``baseline``, ``agent`` or ``custom``; ``policy_hparams``: a baseline's
    hyperparameters, an agent's zoo hyperparameters; ``agent_path``: the saved agent, if any; ``seed``: the
    episode's run seed.

    Outcome: ``test_accuracy``, ``test_loss``, ``val_accuracy`` (final, in [0, 1]); ``compute_fraction``:
    training FLOPs / FLOPs of the full-data run; ``kept_fraction``: mean realised kept fraction over the
    epochs; ``prune_ratios`` (the actions'), ``claimed_prune_ratios`` (the pruner's plans' claims, 0 for an
    epoch that prunes nothing) and ``kept_fractions``: per step (one per epoch unless ``decision_interval`` >
    1); ``selector_compute_fraction``: the in-batch selector's own FLOPs / FLOPs of the full-data run (part of
    ``compute_fraction``; NaN in rows written before it existed); ``episode_return``: the sum of rewards; ``epochs``: epochs trained; ``steps``: env steps;
    ``actions``: the raw actions given to the env (after any discrete wrapper); ``error``: why the episode
    ended early (non-finite loss), else ``None``; ``wall_clock_s``: seconds from reset to the last step (the
    only field that differs between two runs of the same policy and seed).

    A *failed* episode (one that raised, or whose Ray worker died, after its retry; see
    :mod:`prunegym.agents.parallel`) has a row too: ``error`` holds ``"<ExceptionType>: <message>"``,
    ``steps`` and ``epochs`` are 0, the metrics NaN and the lists empty (:func:`is_failed`). An episode that
    diverged is not failed: it ran, and its row has ``steps >= 1`` and the env's ``error``.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    env_config: dict[str, Any]
    policy: str
    policy_type: str
    policy_hparams: dict[str, Any]
    agent_path: str | None
    seed: int
    test_accuracy: float
    test_loss: float
    val_accuracy: float
    compute_fraction: float
    kept_fraction: float
    prune_ratios: list[float]
    kept_fractions: list[float]
    episode_return: float
    epochs: int
    steps: int
    actions: list[list[float]]
    error: str | None
    wall_clock_s: float
    schema: str = field(default=SCHEMA)
    claimed_prune_ratios: list[float] = field(default_factory=list)
    selector_compute_fraction: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpisodeRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EpisodeRow))


def to_jsonable(x: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays to Python, tuples to lists, non-finite floats kept as
    float (``json`` writes NaN/Infinity), anything else that is not JSON (a callable reward) to ``str``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if hasattr(x, "tolist"):  # numpy scalar / array, torch tensor
        return to_jsonable(x.tolist())
    return str(x)


def canonical_json(x: Any) -> str:
    """A stable string for comparing kwargs (sorted keys, JSON types)."""
    return json.dumps(to_jsonable(x), sort_keys=True)


def row_key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same experiment: env id, env kwargs, policy label and seed."""
    return (row.get("env_id"), canonical_json(row.get("env_kwargs", {})), row.get("policy"), int(row.get("seed", -1)))


def is_failed(row: dict[str, Any]) -> bool:
    """Whether ``row`` records a failed episode (an error and no step), not a result."""
    return bool(row.get("error")) and not row.get("steps")


def completed_keys(rows: Iterable[dict[str, Any]]) -> set[tuple]:
    """The :func:`row_key` of every experiment whose latest row in ``rows`` is a result (not failed): what a
    resumed comparison skips. A failed episode is run again."""
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        latest[row_key(row)] = row
    return {key for key, row in latest.items() if not is_failed(row)}


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of ``path`` (``[]`` if it does not exist). A malformed line raises ``ValueError``."""
    p = Path(path)
    if not p.exists():
        return []
    rows = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{i}: not a JSON line ({exc})") from exc
    return rows


@contextmanager
def _locked(folder: Path):
    """An exclusive ``flock`` on the folder itself (no lock file left behind); no-op where unsupported."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # not POSIX, or a folder that cannot be opened: no cross-process lock
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def append_rows(path: str | os.PathLike, rows: Iterable[EpisodeRow | dict[str, Any]]) -> Path:
    """Append ``rows`` to ``path`` atomically (see the module docstring); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r.to_dict() if isinstance(r, EpisodeRow) else to_jsonable(r)) for r in rows]
    for line in lines:
        json.loads(line)  # never write something read_rows cannot read back
    with _locked(p.parent):
        old = p.read_text() if p.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_text_atomic(p, old + "".join(line + "\n" for line in lines))
    return p
