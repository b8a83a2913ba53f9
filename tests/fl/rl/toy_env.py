"""A tiny deterministic traffic-like graph environment with TrafficEnv's interface.

Four intersections on a 2×2 grid (8 directed roads). Each intersection has a north-south
and an east-west queue; its action in [-1, 1] splits a fixed service capacity between
them, served vehicles move on to a neighbour, and new ones arrive at random (seeded by
``reset(seed)``). From step 3 to 5 an incident blocks the road 0→1: it leaves
``edge_index`` and nothing is served onto it. The reward of an intersection is minus its
queue. Pure numpy, milliseconds per episode: for the engine's plumbing and TD3's math,
not for traffic results (those run on SUMO).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

# directed roads of a 2×2 grid: 0-1 and 2-3 east-west, 0-2 and 1-3 north-south
_ROADS = [(0, 1), (1, 0), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)]
_NS_NEXT = [2, 3, 0, 1]
_EW_NEXT = [1, 0, 3, 2]
_BLOCKED = 0  # road 0→1
_INCIDENT = range(3, 6)


@dataclass
class ToyConfig:
    steps: int = 8
    demand: float = 1.0
    seed: int = 0
    step_seconds: float = 0.0  # wall time per step, to make a round last (worker-kill test)


class ToyEnv:
    num_agents = 4
    node_dim = 2
    edge_dim = 1
    action_dim = 1

    def __init__(self, config: ToyConfig) -> None:
        self.config = config
        self.open = True

    def reset(self, seed: int | None = None) -> Data:
        self.rng = np.random.default_rng(self.config.seed if seed is None else seed)
        self.t = 0
        self.q = np.zeros((4, 2))  # [ns, ew] per node
        self.waited = 0.0
        self.arrived = 0.0
        return self._obs()

    def _blocked(self) -> bool:
        return self.t in _INCIDENT

    def _obs(self) -> Data:
        roads = [r for i, r in enumerate(_ROADS) if not (self._blocked() and i == _BLOCKED)]
        edge_index = torch.tensor(roads, dtype=torch.long).t().contiguous()
        edge_attr = torch.tensor([[self.q[u].sum() / 10.0] for u, _ in roads], dtype=torch.float32)
        return Data(x=torch.tensor(self.q / 10.0, dtype=torch.float32), edge_index=edge_index,
                    edge_attr=edge_attr)  # fmt: skip

    def step(self, actions):
        if self.config.step_seconds:
            time.sleep(self.config.step_seconds)
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(4), -1.0, 1.0)
        # demand shifts: north-south heavy first, east-west heavy later
        bias = 0.8 if self.t < self.config.steps // 2 else 0.2
        lam = self.config.demand * np.stack([np.full(4, bias), np.full(4, 1 - bias)], 1)
        arrivals = self.rng.poisson(lam * 2.0)
        served = np.minimum(self.q, 2.0 * np.stack([(1 + a) / 2, (1 - a) / 2], 1))
        self.q = self.q - served + arrivals
        for i in range(4):
            if not (self._blocked() and i == 0):
                self.q[_EW_NEXT[i], 1] += 0.5 * served[i, 1]
            self.q[_NS_NEXT[i], 0] += 0.5 * served[i, 0]
        self.arrived += float(arrivals.sum())
        self.waited += float(self.q.sum())
        self.t += 1
        rewards = -self.q.sum(1).astype(np.float32)
        done = self.t >= self.config.steps
        info = {"time": self.t, "mean_delay": self.waited / max(self.arrived, 1.0),
                "queue": float(self.q.sum()), "incident": self._blocked()}  # fmt: skip
        return self._obs(), rewards, done, info

    def close(self) -> None:
        self.open = False
