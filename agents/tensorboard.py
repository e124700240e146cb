"""TensorBoard layout and tags shared by every policy, agent or baseline, so that runs overlay.

Layout: ``<root>/<env label>/<policy>/seed<k>`` (with a compute budget ``b``:
``<root>/<env label>/<policy>/budget<b>/seed<k>``), the env label being the id with ``/`` replaced by ``_``
(``runs/prunegym_Synthetic-MLP-v0/uniform/seed0``). An evaluation episode writes

* ``epoch/val_accuracy``, ``epoch/train_loss``, ``epoch/kept_fraction``, ``epoch/prune_ratio``,
  ``epoch/compute_fraction_step`` (that step's training FLOPs), ``epoch/compute_fraction_total`` (cumulative;
  both as fractions of the full-data run) and ``epoch/lr`` at x = epoch (1 .. E: the state after that epoch);
* ``episode/test_accuracy``, ``episode/compute_fraction_total``, ``episode/return`` (and
  ``episode/val_accuracy``, ``episode/kept_fraction``) at x = the episode's last epoch, beside its last
  ``epoch/`` points;
* its hyperparameters (policy, pruner, compute budget, seed) with the final metrics for TensorBoard's HPARAMS
  tab, so that runs of different policies compare in one table.

A training run (``<root>/<env label>/<algo>/seed<k>``) has SB3's ``rollout/``, ``train/`` and ``eval/`` tags
at x = timesteps and the ``episode/`` tags of every finished training episode at x = episode count.

While an episode runs (sequential ``evaluate`` / ``compare``) its ``epoch/`` scalars go to
``<run>.live``, flushed after every step, so a long episode shows progress; when it ends, the whole run is
written into a staging folder beside the root and moved into place, replacing any earlier run of the same
policy and seed, and the live run is removed (:func:`write_episode`): a rerun never doubles curves, and a kill
leaves the old run or the new one, never half of one (a left-over ``.live`` run is removed by the next
``compare`` of that folder).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from .env_factory import env_label
from .output import new_staging_dir, replace_folder

__all__ = [
    "EPISODE_TAGS",
    "OPTIONAL_EPISODE_TAGS",
    "OPTIONAL_EPOCH_TAGS",
    "EPOCH_TAGS",
    "HPARAM_METRICS",
    "EpisodeWriter",
    "LiveRun",
    "episode_hparams",
    "episode_summary",
    "epoch_records",
    "has_events",
    "remove_live_runs",
    "row_run_dir",
    "run_dir",
    "write_episode",
]

# tag -> key of an epoch record
EPOCH_TAGS: dict[str, str] = {
    "epoch/val_accuracy": "val_accuracy",
    "epoch/train_loss": "train_loss",
    "epoch/kept_fraction": "kept_fraction",
    "epoch/prune_ratio": "prune_ratio",
    "epoch/compute_fraction_step": "compute_fraction_step",
    "epoch/compute_fraction_total": "compute_fraction",
    "epoch/lr": "lr",
}
# written only for an env with a data regime (label noise, imbalance): the diagnostics of each epoch
OPTIONAL_EPOCH_TAGS: dict[str, str] = {
    "epoch/kept_noisy_fraction": "kept_noisy_fraction",
    "epoch/kept_head_fraction": "kept_head_fraction",
    "epoch/kept_tail_fraction": "kept_tail_fraction",
}
# tag -> key of a result row (or the final info, see episode_summary)
EPISODE_TAGS: dict[str, str] = {
    "episode/test_accuracy": "test_accuracy",
    "episode/compute_fraction_total": "compute_fraction",
    "episode/return": "episode_return",
    "episode/val_accuracy": "val_accuracy",
    "episode/kept_fraction": "kept_fraction",
}
# written only when the episode has the value: the return a RelativeReward agent optimises (training only)
OPTIONAL_EPISODE_TAGS: dict[str, str] = {
    "episode/return_relative": "episode_return_relative",
    "episode/noisy_fraction": "noisy_fraction",  # an env with a data regime
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(name)) or "_"


# HPARAMS-tab metric tag -> key of a result row
HPARAM_METRICS: dict[str, str] = {
    "hparams/test_accuracy": "test_accuracy",
    "hparams/compute_fraction_total": "compute_fraction",
    "hparams/return": "episode_return",
}


def run_dir(root: str | Path, env_id: str, policy: str, seed: int, budget: float | None = None) -> Path:
    """``<root>/<env label>/<policy>/seed<seed>``, or ``.../<policy>/budget<b>/seed<seed>`` for an episode with
    a compute budget (names made filesystem-safe)."""
    base = Path(root) / env_label(env_id) / _safe(policy)
    if budget is not None:
        base = base / f"budget{float(budget):g}"
    return base / f"seed{int(seed)}"


def row_run_dir(root: str | Path, row: dict[str, Any]) -> Path:
    """The run folder of a results row (its budget, if any, from the row's ``env_kwargs``)."""
    budget = (row.get("env_kwargs") or {}).get("compute_budget")
    return run_dir(
        root, row["env_id"], row["policy"], row["seed"], budget if isinstance(budget, (int, float)) else None
    )


def episode_hparams(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """``(hyperparameters, metrics)`` of a result row for TensorBoard's HPARAMS tab: policy, pruner, budget
    (``"none"`` without one) and seed; final test accuracy, compute fraction and return."""
    budget = (row.get("env_kwargs") or {}).get("compute_budget")
    hp = {
        "policy": str(row["policy"]),
        "pruner": str((row.get("env_config") or {}).get("pruner", "?")),
        "budget": f"{float(budget):g}" if isinstance(budget, (int, float)) else "none",
        "seed": int(row["seed"]),
    }
    metrics = {tag: float(row[key]) for tag, key in HPARAM_METRICS.items() if isinstance(row.get(key), (int, float))}
    return hp, metrics


def epoch_records(infos: Iterable[dict[str, Any]]) -> list[dict[str, float]]:
    """One record per env step from the step infos: epoch, val_accuracy, val_loss, train_loss,
    kept_fraction, prune_ratio, compute_fraction (cumulative) and lr."""
    out = []
    for info in infos:
        out.append(
            {
                "epoch": int(info["epoch"]),
                "val_accuracy": float(info["val_accuracy"]),
                "val_loss": float(info["val_loss"]),
                "train_loss": float(info["train_loss"]),
                "kept_fraction": float(info["kept_fraction"]),
                "prune_ratio": float(info["prune_ratio"]),
                "compute_fraction_step": float(info["compute_fraction_step"]),
                "compute_fraction": float(info["compute_fraction_total"]),
                "lr": float(info["lr"]),
                **{k: float(info[k]) for k in OPTIONAL_EPOCH_TAGS.values() if info.get(k) is not None},
            }
        )
    return out


def episode_summary(final_info: dict[str, Any], kept_fractions: list[float]) -> dict[str, float]:
    """The ``episode/`` values of an episode from its last step's info."""
    return {
        "test_accuracy": float(final_info.get("test_accuracy", float("nan"))),
        "compute_fraction": float(final_info["compute_fraction_total"]),
        "episode_return": float(final_info.get("episode_return", float("nan"))),
        "val_accuracy": float(final_info["val_accuracy"]),
        "kept_fraction": float(sum(kept_fractions) / len(kept_fractions)) if kept_fractions else 1.0,
        **{
            key: float(final_info[key])
            for key in ("episode_return_relative", "noisy_fraction")
            if final_info.get(key) is not None
        },
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
            for tag, key in OPTIONAL_EPOCH_TAGS.items():
                if rec.get(key) is not None:
                    self.writer.add_scalar(tag, rec[key], rec["epoch"])

    def episode(self, index: int, summary: dict[str, Any]) -> None:
        for tag, key in EPISODE_TAGS.items():
            if key in summary and summary[key] is not None:
                self.writer.add_scalar(tag, float(summary[key]), int(index))
        for tag, key in OPTIONAL_EPISODE_TAGS.items():  # only where the episode has the value (NaN: it has not)
            value = summary.get(key)
            if value is not None and value == value:
                self.writer.add_scalar(tag, float(value), int(index))

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int = 0) -> None:
        """The run's hyperparameters and final metrics for the HPARAMS tab, in this run (not a sub-run, as
        ``SummaryWriter.add_hparams`` would make)."""
        exp, ssi, sei = hparams_summary(hparams, metrics)
        fw = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            fw.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def has_events(log_dir: str | Path) -> bool:
    """Whether ``log_dir`` holds a TensorBoard event file."""
    d = Path(log_dir)
    return d.is_dir() and any(p.name.startswith("events.out.tfevents.") for p in d.iterdir())


class LiveRun:
    """The ``epoch/`` scalars of a running episode in ``<run>.live``, flushed after every step (see the module
    docstring); call with each step's ``info``; ``close()`` at the end."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(str(log_dir) + ".live")
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self._writer: EpisodeWriter | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = EpisodeWriter(self.log_dir)
        self._writer.epochs(epoch_records([info]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def remove_live_runs(root: str | Path) -> None:
    """Remove the ``.live`` runs a killed episode left under ``root``."""
    r = Path(root)
    if r.is_dir():
        for p in r.rglob("*.live"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def write_episode(
    log_dir: str | Path,
    records: list[dict[str, float]],
    summary: dict[str, Any],
    index: int | None = None,
    staging: str | Path | None = None,
    hparams: tuple[dict[str, Any], dict[str, float]] | None = None,
) -> Path:
    """Write one episode's ``epoch/`` curves, ``episode/`` values (at x = ``index``, default its last epoch) and
    ``hparams`` (see :func:`episode_hparams`) as the run ``log_dir``, replacing what was there and its live run:
    written in a fresh folder of ``staging`` (default ``<parent>/.<name>.staging``), then moved over ``log_dir``."""
    dest = Path(log_dir)
    area = Path(staging) if staging is not None else dest.parent / f".{dest.name}.staging"
    tmp = new_staging_dir(area)
    step = int(index) if index is not None else (int(records[-1]["epoch"]) if records else 0)
    try:
        w = EpisodeWriter(tmp)
        try:
            w.epochs(records)
            w.episode(step, summary)
            if hparams is not None:
                w.hparams(*hparams, step=step)
        finally:
            w.close()
        replace_folder(tmp, dest, area)
        shutil.rmtree(Path(str(dest) + ".live"), ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
