"""Draw docs/img/traffic-network.png and docs/img/traffic-rounds.png from a short real run.

    .venv/bin/python docs/img/src/traffic_pictures.py   # rewrites both PNGs (~1-2 minutes)

The network: the 4x4 SUMO grid under max-pressure control, drawn while the episode's
incident blocks a road. The rounds: federated graph-TD3 (4 districts, FedAvg) for a few
short rounds on a local Dask cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fedhub.fl.rl.baselines import MaxPressure  # noqa: E402
from fedhub.fl.rl.federated import train_federated  # noqa: E402
from fedhub.fl.rl.plot import network_figure, rounds_figure  # noqa: E402
from fedhub.fl.rl.traffic import TrafficConfig, TrafficEnv  # noqa: E402

OUT = Path(__file__).resolve().parents[1]
CONFIG = TrafficConfig(grid=4, demand=0.6, episode_seconds=900, seed=0)
ROUNDS = 15


def network_picture() -> Path:
    policy = MaxPressure()
    with TrafficEnv(CONFIG) as env:
        obs = env.reset(seed=CONFIG.seed)
        incident = env.scenario.incident_start
        done, info = False, {}
        while not done and not (info.get("incident") and env.time >= incident + 120):
            obs, _, done, info = env.step(policy.act(obs, env))
        fig = network_figure(env)
        fig.axes[0].set_title(
            f"4x4 grid, max-pressure, t = {env.time} s: queues; "
            f"{'a blocked road' if info.get('incident') else 'no incident now'}",
            fontsize=10,
        )
        path = OUT / "traffic-network.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def rounds_picture() -> Path:
    policy = train_federated(CONFIG, 4, rounds=ROUNDS, episodes_per_round=2, seed=0,
                             cluster_kwargs={"n_workers": 2})  # fmt: skip
    fig = rounds_figure(policy.history, title=f"federated graph-TD3, 4 districts, {CONFIG.episode_seconds} s episodes")  # fmt: skip
    path = OUT / "traffic-rounds.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


if __name__ == "__main__":
    which = sys.argv[1:] or ["network", "rounds"]
    if "network" in which:
        print(network_picture())
    if "rounds" in which:
        print(rounds_picture())
