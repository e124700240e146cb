"""SB3 callbacks of the trainer: checkpoints that can be resumed, held-out evaluation, episode tags, progress."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from tqdm.auto import tqdm

from ..rollout import play_episode
from ..tensorboard import EpisodeWriter, episode_summary
from .agent import Agent, ObsNormalizer, save_agent

__all__ = ["EpisodeTagsCallback", "HeldOutEvalCallback", "ProgressCallback", "ResumableCheckpoint", "latest_checkpoint"]


def latest_checkpoint(folder: str | Path, prefix: str) -> tuple[int, Path] | None:
    """``(timesteps, zip path)`` of the newest complete checkpoint (its ``.json`` state written last)."""
    best = None
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)_steps\.zip$")
    for p in Path(folder).glob(f"{prefix}_*_steps.zip"):
        m = pattern.match(p.name)
        if m and p.with_suffix(".json").is_file():
            steps = int(m.group(1))
            if best is None or steps > best[0]:
                best = (steps, p)
    return best


class ResumableCheckpoint(CheckpointCallback):
    """SB3's ``CheckpointCallback`` files (``<prefix>_<N>_steps.zip``, ``<prefix>_vecnormalize_<N>_steps.pkl``,
    for off-policy algos ``<prefix>_replay_buffer_<N>_steps.pkl``, only the newest kept) plus, written last,
    ``<prefix>_<N>_steps.json`` with the counters of ``state()``, which marks the checkpoint complete.

    It saves at the end of the rollout during which ``save_freq`` calls (vec env steps) have passed, and
    ``save()`` saves now (on an interruption, at the end of training)."""

    def __init__(self, folder: str | Path, prefix: str, save_freq: int, state: Callable[[], dict[str, Any]]):
        super().__init__(
            save_freq=max(int(save_freq), 1),
            save_path=str(folder),
            name_prefix=prefix,
            save_replay_buffer=True,
            save_vecnormalize=True,
        )
        self.every = int(save_freq)
        self._due = False
        self.state = state
        self.last_saved: int | None = None

    def save(self) -> Path:
        self.num_timesteps = int(self.model.num_timesteps)  # may lag after an interruption mid-step
        Path(self.save_path).mkdir(parents=True, exist_ok=True)
        zip_path = Path(self._checkpoint_path(extension="zip"))
        self.model.save(str(zip_path))
        vn = self.model.get_vec_normalize_env()
        if vn is not None:
            vn.save(self._checkpoint_path("vecnormalize_", extension="pkl"))
        if getattr(self.model, "replay_buffer", None) is not None:
            keep = Path(self._checkpoint_path("replay_buffer_", extension="pkl"))
            # a model with a replay_buffer is off-policy: OffPolicyAlgorithm.save_replay_buffer
            self.model.save_replay_buffer(str(keep))  # type: ignore[attr-defined]
            for old in Path(self.save_path).glob(f"{self.name_prefix}_replay_buffer_*_steps.pkl"):
                if old != keep:
                    old.unlink(missing_ok=True)
        state = {"num_timesteps": int(self.model.num_timesteps), **self.state()}
        tmp = zip_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(zip_path.with_suffix(".json"))
        self.last_saved = int(self.model.num_timesteps)
        return zip_path

    def _on_step(self) -> bool:
        if self.every > 0 and self.n_calls % self.every == 0:
            self._due = True
        return True

    def _on_rollout_end(self) -> None:
        # SB3 calls on_step before it stores the step's transition: saving at the end of the rollout keeps
        # the replay buffer and the timestep counter in step.
        if self._due:
            self.save()
            self._due = False


class EpisodeTagsCallback(BaseCallback):
    """Writes the ``episode/`` tags of every finished training episode at x = episode count (counted over
    all envs, continuing from ``start`` after a resume)."""

    def __init__(self, log_dir: str | Path | None, start: int = 0):
        super().__init__()
        self.log_dir = log_dir
        self.episodes = int(start)
        self._writer: EpisodeWriter | None = None
        self._kept: list[list[float]] = []

    def _on_training_start(self) -> None:
        if self.log_dir is not None:
            self._writer = EpisodeWriter(self.log_dir)

    def _on_step(self) -> bool:

        dones, infos = self.locals.get("dones", []), self.locals.get("infos", [])
        if len(self._kept) != len(infos):
            self._kept = [[] for _ in infos]
        for i, (done, info) in enumerate(zip(dones, infos)):
            if "kept_fraction" in info:
                self._kept[i].append(float(info["kept_fraction"]))
            if done and "episode_return" in info:
                if self._writer is not None:
                    self._writer.episode(self.episodes, episode_summary(info, self._kept[i]))
                self.episodes += 1
            if done:
                self._kept[i] = []
        return True

    def _on_training_end(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class HeldOutEvalCallback(BaseCallback):
    """Every ``eval_freq`` calls, one deterministic episode per held-out seed on a separate env (obs
    normalized with the training statistics); logs ``eval/mean_reward`` (SB3's tag), ``eval/std_reward``,
    ``eval/mean_test_accuracy``, ``eval/mean_val_accuracy`` and ``eval/mean_compute_fraction`` at x =
    timesteps, and saves the best agent so far (by mean return) to ``best_path``."""

    def __init__(
        self,
        make_env: Callable[[], Any],
        seeds: list[int],
        eval_freq: int,
        best_path: str | Path | None,
        meta: Callable[[], dict[str, Any]],
    ):
        super().__init__()
        self.make_env = make_env
        self.seeds = list(seeds)
        self.eval_freq = int(eval_freq)
        self.best_path = best_path
        self.meta = meta
        self.best_mean = float("-inf")
        self.history: list[dict[str, float]] = []
        self._env = None

    def evaluate_now(self) -> dict[str, float]:

        vn = self.model.get_vec_normalize_env()
        agent = Agent(self.model, meta=self.meta(), obs_normalizer=vn.normalize_obs if vn is not None else None)
        if self._env is None:
            self._env = agent.wrap_env(self.make_env())
        returns, tests, vals, comps = [], [], [], []
        for seed in self.seeds:
            infos, rewards = play_episode(self._env, agent, seed)
            final = infos[-1]
            returns.append(sum(rewards))
            tests.append(final.get("test_accuracy", float("nan")))
            vals.append(final["val_accuracy"])
            comps.append(final["compute_fraction_total"])
        stats = {
            "mean_reward": float(np.mean(returns)),
            "std_reward": float(np.std(returns)),
            "mean_test_accuracy": float(np.mean(tests)),
            "mean_val_accuracy": float(np.mean(vals)),
            "mean_compute_fraction": float(np.mean(comps)),
        }
        for key, value in stats.items():
            self.logger.record(f"eval/{key}", value)
        self.logger.dump(self.num_timesteps)
        self.history.append({"timesteps": int(self.num_timesteps), **stats})
        if stats["mean_reward"] > self.best_mean:
            self.best_mean = stats["mean_reward"]
            if self.best_path is not None:
                meta = {**self.meta(), "best_mean_reward": self.best_mean, "num_timesteps": int(self.num_timesteps)}
                save_agent(self.model, self.best_path, meta, ObsNormalizer.from_vecnormalize(vn))
        return stats

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.evaluate_now()
        return True

    def _on_training_end(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


class ProgressCallback(BaseCallback):
    """A tqdm bar over timesteps (SB3's own needs ``rich``)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "timesteps"):
        super().__init__()
        self.total, self.initial, self.desc = int(total), int(initial), desc
        self._bar: tqdm | None = None

    def _on_training_start(self) -> None:

        self._bar = tqdm(total=self.total, initial=self.initial, desc=self.desc, unit="step")

    def _on_step(self) -> bool:
        assert self._bar is not None  # _on_training_start made it
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
