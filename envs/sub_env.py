"""One sub-env of a ``PruningVectorEnv`` seen as a ``PruningEnv``: what ``get_attr`` / ``call`` (and SB3's
``VecEnv.get_attr`` / ``env_method`` through the adapter) read of it."""

from __future__ import annotations

from typing import Any

__all__ = ["SubEnv"]


class SubEnv:
    """Sub-env ``index`` of ``venv`` (a ``PruningVectorEnv``): its own ``run`` (a ``RunView`` of the batch, or
    ``None`` before the first reset), ``episode`` (its ``EpisodeState``), ``pruner``, ``reward``,
    ``compute_budget``, ``run_seed``, ``np_random`` and ``last_info``; every other attribute (``policy_context``,
    ``encode_action``, ``pruner_name``, ``epochs``, ``env_kwargs``, ...) is the vector env's, the same for
    every sub-env."""

    def __init__(self, venv: Any, index: int):
        self._venv, self.index = venv, int(index)

    @property
    def run(self) -> Any:
        batch = self._venv.batch
        return batch.runs[self.index] if batch is not None else None

    @property
    def episode(self) -> Any:
        return self._venv.episodes[self.index]

    @property
    def pruner(self) -> Any:
        return self._venv.pruners[self.index]

    @property
    def reward(self) -> Any:
        return self._venv.rewards[self.index]

    @property
    def compute_budget(self) -> float | None:
        ep = self.episode
        return ep.compute_budget if ep is not None else None

    @property
    def run_seed(self) -> int | None:
        ep = self.episode
        return ep.seed if ep is not None else None

    @property
    def np_random(self) -> Any:
        return self._venv.rngs[self.index]

    @property
    def last_info(self) -> dict[str, Any]:
        return self._venv.last_infos[self.index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._venv, name)

    def __repr__(self) -> str:
        v = self._venv
        return f"SubEnv({self.index} of {type(v).__name__}({v.task!r}, num_envs={v.num_envs}))"
