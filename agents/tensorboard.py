"""TensorBoard layout and tags shared by every policy, agent or baseline, so that runs overlay.

Layout: ``<root>/<env label>/<policy>/seed<k>``, the env label being the id with ``/`` replaced by ``_``
(``runs/prunegym_Synthetic-MLP-v0/uniform/seed0``). An evaluation episode writes

* ``epoch/val_accuracy``, ``epoch/train_loss``, ``epoch/kept_fraction``, ``epoch/prune_ratio``,
  ``epoch/compute_fraction`` (cumulative, as a fraction of the full-data run) and ``epoch/lr`` at x = epoch
  (1 .. E: the state after that epoch);
* ``episode/test_accuracy``, ``episode/compute_fraction``, ``episode/return`` (and ``episode/val_accuracy``,
  ``episode/kept_fraction``) at x = the episode's index in its run (0 for a benchmark episode).

A training run (``<root>/<env label>/<algo>/seed<k>``) has SB3's ``rollout/``, ``train/`` and ``eval/`` tags
at x = timesteps and the ``episode/`` tags of every finished training episode at x = episode count.

An evaluation run is written whole into a staging folder beside the root and then moved into place,
replacing any earlier run of the same policy and seed (:func:`write_episode`): a rerun never doubles curves,
and a kill leaves the old run or the new one, never half of one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .env_factory import env_label
from .output import new_staging_dir, replace_folder
from torch.utils.tensorboard import SummaryWriter
import shutil

__all__ = [
    "EPISODE_TAGS", "EPOCH_TAGS", "EpisodeWriter", "episode_summary", "epoch_records", "has_events", "run_dir",
    "write_episode",
]

# tag -> key of an epoch record
EPOCH_TAGS: dict[str, str] = {
    "epoch/val_accuracy": "val_accuracy",
    "epoch/train_loss": "train_loss",
    "epoch/kept_fraction": "kept_fraction",
    "epoch/prune_ratio": "prune_ratio",
    "epoch/compute_fraction": "compute_fraction",
    "epoch/lr": "lr",
}
# tag -> key of a result row (or the final info, see episode_summary)
EPISODE_TAGS: dict[str, str] = {
    "episode/test_accuracy": "test_accuracy",
    "episode/compute_fraction": "compute_fraction",
    "episode/return": "episode_return",
    "episode/val_accuracy": "val_accuracy",
    "episode/kept_fraction": "kept_fraction",
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(name)) or "_"


def run_dir(root: str | Path, env_id: str, policy: str, seed: int) -> Path:
    """``<root>/<env label>/<policy>/seed<seed>`` (names made filesystem-safe)."""
    return Path(root) / env_label(env_id) / _safe(policy) / f"seed{int(seed)}"


def epoch_records(infos: Iterable[dict[str, Any]]) -> list[dict[str, float]]:
    """One record per env step from the step infos: epoch, val_accuracy, val_loss, train_loss,
    kept_fraction, prune_ratio, compute_fraction (cumulative) and lr."""
    out = []
    for info in infos:
        out.append({
            "epoch": int(info["epoch"]),
            "val_accuracy": float(info["val_accuracy"]),
            "val_loss": float(info["val_loss"]),
            "train_loss": float(info["train_loss"]),
            "kept_fraction": float(info["kept_fraction"]),
            "prune_ratio": float(info["prune_ratio"]),
            "compute_fraction": float(info["compute_fraction_total"]),
            "lr": float(info["lr"]),
        })
    return out


def episode_summary(final_info: dict[str, Any], kept_fractions: list[float]) -> dict[str, float]:
    """The ``episode/`` values of an episode from its last step's info."""
    return {
        "test_accuracy": float(final_info.get("test_accuracy", float("nan"))),
        "compute_fraction": float(final_info["compute_fraction_total"]),
        "episode_return": float(final_info.get("episode_return", float("nan"))),
        "val_accuracy": float(final_info["val_accuracy"]),
        "kept_fraction": float(sum(kept_fractions) / len(kept_fractions)) if kept_fractions else 1.0,
    }


class EpisodeWriter:
    """A ``SummaryWriter`` on one run folder that writes the shared tags."""

    def __init__(self, log_dir: str | Path):

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def epochs(self, records: list[dict[str, float]]) -> None:
        for rec in records:
            for tag, key in EPOCH_TAGS.items():
                self.writer.add_scalar(tag, rec[key], rec["epoch"])

    def episode(self, index: int, summary: dict[str, Any]) -> None:
        for tag, key in EPISODE_TAGS.items():
            if key in summary and summary[key] is not None:
                self.writer.add_scalar(tag, float(summary[key]), int(index))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def has_events(log_dir: str | Path) -> bool:
    """Whether ``log_dir`` holds a TensorBoard event file."""
    d = Path(log_dir)
    return d.is_dir() and any(p.name.startswith("events.out.tfevents.") for p in d.iterdir())


def write_episode(log_dir: str | Path, records: list[dict[str, float]], summary: dict[str, Any],
                  index: int = 0, staging: str | Path | None = None) -> Path:
    """Write one episode's ``epoch/`` curves and ``episode/`` values as the run ``log_dir``, replacing
    what was there: written in a fresh folder of ``staging`` (default ``<parent>/.<name>.staging``), then moved
    over ``log_dir``."""
    dest = Path(log_dir)
    area = Path(staging) if staging is not None else dest.parent / f".{dest.name}.staging"
    tmp = new_staging_dir(area)
    try:
        w = EpisodeWriter(tmp)
        try:
            w.epochs(records)
            w.episode(index, summary)
        finally:
            w.close()
        replace_folder(tmp, dest, area)
    finally:
        if tmp.exists():

            shutil.rmtree(tmp, ignore_errors=True)
    return dest
