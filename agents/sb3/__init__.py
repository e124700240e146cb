"""SB3 agents: training (:func:`train_agent`), callbacks, hyperparameters in RL-Zoo format, the vec envs, and
saved or shipped agents (:class:`Agent`, :func:`load_agent`, ``pretrained:<name>``)."""

from __future__ import annotations

from .agent import ALGOS, Agent, ObsNormalizer, load_agent, save_agent
from .batched_vec_env import BatchedVecEnv
from .hyperparams import load_hyperparams
from .train import train_agent
from .vec_envs import VEC_ENVS, make_vec_env

__all__ = [
    "ALGOS",
    "VEC_ENVS",
    "Agent",
    "BatchedVecEnv",
    "ObsNormalizer",
    "load_agent",
    "load_hyperparams",
    "make_vec_env",
    "save_agent",
    "train_agent",
]
