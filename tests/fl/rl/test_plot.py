"""fedhub.fl.rl.plot draws what the environment holds: the roads, their queues, the incident."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch_geometric.data import Data  # noqa: E402

from fedhub.fl.rl.plot import BLOCKED, network_figure, rounds_figure  # noqa: E402
from fedhub.fl.rl.traffic import TrafficConfig, TrafficEnv  # noqa: E402


def test_network_figure_of_a_running_env_marks_the_blocked_road():
    config = TrafficConfig(grid=2, episode_seconds=600, demand=0.5, seed=1)
    with TrafficEnv(config) as env:
        env.reset(seed=1)
        done, info = False, {}
        while not done and not info.get("incident"):
            _, _, done, info = env.step(None)
        assert info["incident"], "the seeded incident happens within the episode"
        queues = [env.sumo.edge.getLastStepHaltingNumber(e) for e in env.road_ids]
        fig = network_figure(env)
    ax = fig.axes[0]
    roads = ax.collections[0]
    # every open road is one coloured segment carrying its halting vehicles
    open_queues = [q for e, q in zip(env.road_ids, queues, strict=True) if e not in info["blocked_edges"]]  # fmt: skip
    assert list(roads.get_array()) == open_queues
    dashed = [ln for ln in ax.lines if ln.get_color() == BLOCKED and ln.get_linestyle() == "--"]
    assert len(dashed) == len(info["blocked_edges"]) == 1
    # intersections at their SUMO coordinates (200 m apart)
    xy = ax.collections[1].get_offsets()
    assert len(xy) == 4 and np.ptp(np.asarray(xy)[:, 0]) == pytest.approx(config.length)
    assert len(fig.axes) == 2  # the colour bar


def test_network_figure_of_an_observation_and_values():
    obs = Data(
        x=torch.zeros(4, 2),
        edge_index=torch.tensor([[0, 1, 2], [1, 3, 3]]),
        edge_attr=torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.25, 1.0], [0.0, 0.0, 1.0]]),
        num_nodes=4,
    )
    fig = network_figure(obs)
    assert list(fig.axes[0].collections[0].get_array()) == [0.5, 0.25, 0.0]
    fig = network_figure(obs, values=[3, 2, 1])
    assert list(fig.axes[0].collections[0].get_array()) == [3, 2, 1]
    with pytest.raises(ValueError, match="one per road"):
        network_figure(obs, values=[1, 2])


def test_rounds_figure_plots_each_metric_per_round():
    history = [
        {"round": 1, "reward": -2.0, "mean_delay": 40.0, "queue": 20.0},
        {"round": 2, "reward": -1.5, "mean_delay": 35.0, "queue": 18.0},
    ]
    fig = rounds_figure(history)
    ys = [list(ax.lines[0].get_ydata()) for ax in fig.axes]
    assert ys == [[-2.0, -1.5], [40.0, 35.0], [20.0, 18.0]]
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2]
