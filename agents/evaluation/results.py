"""The results row schema and ``results.jsonl``: one JSON object per line, one line per episode.

Appending is atomic: under an exclusive ``flock`` on the file's folder the existing lines are read (and
checked: a corrupt file raises before anything is written), the new ones added (``replace=True``: replacing
the earlier rows of the same experiment), the whole written to a temporary file in the same folder, fsynced
and moved over the original with ``os.replace``. A reader never sees half a line, an interrupted writer leaves
the old file intact, and two processes appending at once both keep their rows.

The file is strict JSON: non-finite floats (the NaN metrics of a failed episode) are written as ``null`` and
read back by :func:`read_rows` as NaN in the float fields of the schema.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from prunegym.training.io import canonical_json, strict_jsonable, to_jsonable, write_text_atomic

__all__ = [
    "FLOAT_FIELDS",
    "ROW_FIELDS",
    "SCHEMA",
    "EpisodeRow",
    "append_rows",
    "canonical_json",
    "completed_keys",
    "has_error",
    "is_diverged",
    "is_failed",
    "latest_rows",
    "read_rows",
    "row_key",
    "strict_jsonable",
    "to_jsonable",
]

SCHEMA = "prunegym.results/2"  # /2 added policy_hash and runtime; /1 rows still read (without them)


@dataclass
class EpisodeRow:
    """One evaluation episode of one policy on one seed (schema ``prunegym.results/2``).

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
    ``compute_fraction``; NaN in rows written before it existed); with a data regime, ``instance`` (the episode's
    ``label_noise``, ``imbalance`` and ``compute_budget``), ``noisy_fraction`` (training labels corrupted) and,
    per step, ``kept_noisy_fractions``, ``kept_head_fractions`` and ``kept_tail_fractions`` (see ``StepInfo``;
    ``None`` / empty without one); ``episode_return``: the sum of rewards;
    ``epochs``: epochs trained; ``steps``: env steps;
    ``actions``: the raw actions given to the env (after any discrete wrapper); ``error``: why the episode
    ended early (non-finite loss), else ``None``; ``wall_clock_s``: seconds from reset to the last step (the
    only field that differs between two runs of the same policy and seed).

    Provenance: ``policy_hash``: what the policy *is* (``sha256:`` + 16 hex digits): for a saved agent the
    content of its ``.zip``, its observation statistics and its env interface; for a baseline its name and
    full hyperparameters; a resumed ``compare`` skips a pair only if its row has the current hash and
    prunegym version. ``runtime``: the versions (prunegym, torch, numpy, stable_baselines3, gymnasium,
    python), ``torch_threads`` and ``device`` of the episode (CPU results are bit-for-bit only under the same
    ones). Rows of schema ``prunegym.results/1`` have neither (``None`` / ``{}``).

    A *failed* episode (one that raised, or whose Ray worker died, after its retry; see
    :mod:`prunegym.agents.parallel.ray_tasks`) has a row too: ``error`` holds ``"<ExceptionType>: <message>"``,
    ``steps`` and ``epochs`` are 0, the metrics NaN (``null`` in the file) and the lists empty
    (:func:`is_failed`). An episode that diverged is not failed: it ran, and its row has ``steps >= 1`` and the
    env's ``error``.
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
    policy_hash: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    schema: str = field(default=SCHEMA)
    claimed_prune_ratios: list[float] = field(default_factory=list)
    selector_compute_fraction: float = float("nan")
    instance: dict[str, Any] | None = None
    noisy_fraction: float | None = None
    kept_noisy_fractions: list[float] = field(default_factory=list)
    kept_head_fractions: list[float] = field(default_factory=list)
    kept_tail_fractions: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EpisodeRow))
# fields read back as float (``null`` -> NaN); the list fields hold floats
FLOAT_FIELDS = (
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "compute_fraction",
    "kept_fraction",
    "episode_return",
    "wall_clock_s",
)
_FLOAT_LIST_FIELDS = (
    "prune_ratios",
    "kept_fractions",
    "kept_noisy_fractions",
    "kept_head_fractions",
    "kept_tail_fractions",
)


def _restore_floats(row: dict[str, Any]) -> dict[str, Any]:
    for key in FLOAT_FIELDS:
        if key in row and row[key] is None:
            row[key] = float("nan")
    for key in _FLOAT_LIST_FIELDS:
        if isinstance(row.get(key), list):
            row[key] = [float("nan") if v is None else v for v in row[key]]
    return row


def row_key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same experiment: env id, env kwargs, policy label and seed."""
    return (row.get("env_id"), canonical_json(row.get("env_kwargs", {})), row.get("policy"), int(row.get("seed", -1)))


def is_failed(row: dict[str, Any]) -> bool:
    """Whether ``row`` records a failed episode (an error and no step), not a result."""
    return bool(row.get("error")) and not row.get("steps")


def is_diverged(row: dict[str, Any]) -> bool:
    """Whether ``row`` records an episode that ran and diverged (non-finite loss: an error and steps)."""
    return bool(row.get("error")) and bool(row.get("steps"))


def has_error(row: dict[str, Any]) -> bool:
    """Failed or diverged: a row kept out of means and Pareto fronts."""
    return bool(row.get("error"))


def latest_rows(rows: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """:func:`row_key` -> the last row of that experiment in ``rows`` (a rerun replaces the earlier row)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        latest[row_key(row)] = row
    return latest


def completed_keys(
    rows: Iterable[dict[str, Any]], policy_hashes: dict[Any, str | None] | None = None, version: str | None = None
) -> set[tuple]:
    """The :func:`row_key` of every experiment whose latest row in ``rows`` is a result (not failed): what a
    resumed comparison skips. A failed episode is run again. With ``policy_hashes`` (policy label, or
    ``(label, canonical env kwargs)`` where one label runs with different settings per env, e.g. per budget
    -> the policy's current ``policy_hash``) a row only counts if it has that hash, and with ``version`` if it
    was written by that prunegym version: a changed agent file or baseline, or another prunegym, runs again."""
    out = set()
    for key, row in latest_rows(rows).items():
        if is_failed(row):
            continue
        if policy_hashes is not None:
            want = policy_hashes.get((key[2], key[1]), policy_hashes.get(key[2], "not a policy here"))
            if row.get("policy_hash") != want:
                continue
        if version is not None and (row.get("runtime") or {}).get("prunegym") != version:
            continue
        out.add(key)
    return out


def _parse_line(p: Path, i: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}:{i}: not a JSON line ({exc}); fix or remove the line") from exc
    if not isinstance(row, dict):
        raise ValueError(f"{p}:{i}: a results line must be a JSON object (a row), got {type(row).__name__}")
    seed = row.get("seed")
    if "seed" in row and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{p}:{i}: seed={seed!r} is not an int")
    return _restore_floats(row)


def _read_lines(p: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row) for every non-blank line of ``p``; ``ValueError`` naming the line if one is not a row."""
    try:
        text = p.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not a results file (not UTF-8 text: {exc})") from exc
    except IsADirectoryError as exc:
        raise ValueError(f"{p}: is a folder, not a results file") from exc
    return [(line, _parse_line(p, i, line)) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of ``path`` (``[]`` if it does not exist). A line that is not a JSON object raises
    ``ValueError`` naming the file and line; ``null`` in a float field reads as NaN."""
    p = Path(path)
    if not p.exists():
        return []
    return [row for _, row in _read_lines(p)]


@contextmanager
def _locked(folder: Path):
    """An exclusive ``flock`` on the folder itself (no lock file left behind); no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):  # not POSIX, or a folder that cannot be opened: no cross-process lock
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def append_rows(path: str | os.PathLike, rows: Iterable[EpisodeRow | dict[str, Any]], *, replace: bool = False) -> Path:
    """Append ``rows`` to ``path`` atomically (see the module docstring); returns the path. ``replace``:
    first drop the rows of the same experiments (:func:`row_key`), so that a rerun leaves one row per
    experiment. A corrupt existing file raises ``ValueError`` (naming the line) and is left as it is."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = [strict_jsonable(r.to_dict() if isinstance(r, EpisodeRow) else r) for r in rows]
    lines = [json.dumps(r, allow_nan=False) for r in new]
    for line in lines:
        _parse_line(p, 0, line)  # never write something read_rows cannot read back
    with _locked(p.parent):
        old = _read_lines(p) if p.exists() else []
        if replace:
            keys = {row_key(r) for r in new}
            old = [(line, row) for line, row in old if row_key(row) not in keys]
        write_text_atomic(p, "".join(line + "\n" for line, _ in old) + "".join(line + "\n" for line in lines))
    return p
