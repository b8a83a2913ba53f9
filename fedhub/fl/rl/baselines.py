"""Controllers to beat: fixed-time and max-pressure, and the evaluation every policy shares.

A policy is anything with ``act(obs, env) -> actions`` (``[N, action_dim]`` in ``[-1, 1]``,
or ``None`` for SUMO's default programme). :func:`evaluate` runs it on one environment per
seed and reports the environment's delay metric (see :mod:`fedhub.fl.rl.traffic`), so every
policy is measured the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .traffic import TrafficConfig, TrafficEnv


class FixedTime:
    """SUMO's default programme: equal greens, one cycle per decision (the zero action)."""

    def act(self, obs, env: TrafficEnv) -> None:
        return None

    def __repr__(self) -> str:
        return "FixedTime()"


class MaxPressure:
    """Max-pressure control (Varaiya 2013) within the environment's cycle.

    Each cycle every intersection gives all the green it may move (beyond the minimum
    greens) to the phase with the largest pressure: vehicles on the lanes the phase lets in
    minus vehicles on the lanes they lead to, read from the observation's ``pressure_*``
    columns. Ties, including all-zero pressure, give an equal split. The cycle length stays
    fixed (the action space has no cycle length), which is the cyclic variant of
    max-pressure; it needs no training and uses only each intersection's own roads.
    """

    def act(self, obs, env: TrafficEnv) -> np.ndarray:
        cols = [env.feature_names.index(f"pressure_{p}") for p in range(env.action_dim)]
        pressure = obs.x[:, cols].numpy()
        actions = np.full(pressure.shape, -1.0, dtype=np.float32)
        best = pressure.max(axis=1, keepdims=True)
        winners = np.isclose(pressure, best)
        actions[winners] = 1.0
        actions[winners.sum(axis=1) > 1] = 0.0
        return actions

    def __repr__(self) -> str:
        return "MaxPressure()"


def run_episode(policy, env: TrafficEnv, seed: int) -> dict:
    """One episode; the final mean delay, the mean queue over decisions, the return."""
    obs = env.reset(seed=seed)
    done, queues, total_reward, info = False, [], 0.0, {}
    while not done:
        obs, reward, done, info = env.step(policy.act(obs, env))
        queues.append(info["queue"])
        total_reward += float(np.sum(reward))
    return {
        "seed": seed,
        "mean_delay": info["mean_delay"],
        "mean_queue": float(np.mean(queues)),
        "reward": total_reward,
        "arrived": info["arrived"],
        "departed": info["departed"],
    }


def evaluate(policy, config: TrafficConfig, seeds: Iterable[int]) -> dict:
    """``{"mean_delay", "mean_queue", "episodes"}`` of ``policy`` over one episode per seed
    (the seed draws each episode's demand and incident)."""
    episodes = []
    with TrafficEnv(config) as env:
        for seed in seeds:
            episodes.append(run_episode(policy, env, int(seed)))
    if not episodes:
        return {"mean_delay": math.nan, "mean_queue": math.nan, "episodes": []}
    return {
        "mean_delay": float(np.mean([e["mean_delay"] for e in episodes])),
        "mean_queue": float(np.mean([e["mean_queue"] for e in episodes])),
        "episodes": episodes,
    }
