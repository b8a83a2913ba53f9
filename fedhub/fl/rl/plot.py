"""Pictures of the traffic environment and of a federated RL run (matplotlib).

* :func:`network_figure`: the road network, intersections at their SUMO coordinates, each
  road (a directed edge) coloured by its queue, a blocked (incident) road dashed red;
* :func:`rounds_figure`: reward, mean delay and queue per round from round records.

matplotlib comes with the ``notebook`` extra; it is imported when a picture is drawn.
"""

from __future__ import annotations

import numpy as np

BLOCKED = "#d62728"


def _layout(env_or_obs):
    """``(xy [N, 2], ends [2, R], road_ids, blocked, queues [R])`` of what is drawn."""
    from .traffic import TrafficEnv

    if isinstance(env_or_obs, TrafficEnv):
        import sumolib

        env = env_or_obs
        net = sumolib.net.readNet(str(env.net_file))
        xy = np.array([net.getNode(n).getCoord() for n in env.node_ids], dtype=float)
        ends = env._road_ends
        roads = list(env.road_ids)
        blocked = set(getattr(env, "blocked", []))
        ls = env.sumo
        if ls is not None:
            queues = np.array([ls.edge.getLastStepHaltingNumber(e) for e in roads], dtype=float)
        else:
            queues = np.zeros(len(roads))
        return xy, ends, roads, blocked, queues
    # an observation alone: no coordinates, so a square grid by node index
    # (TrafficEnv numbers intersections column by column: index = column * g + row)
    obs = env_or_obs
    n = int(obs.num_nodes)
    g = max(int(round(np.sqrt(n))), 1)
    xy = np.array([[i // g, i % g] for i in range(n)], dtype=float)
    ends = obs.edge_index.cpu().numpy()
    attr = getattr(obs, "edge_attr", None)
    queues = attr[:, 1].cpu().numpy() if attr is not None and len(attr) else np.zeros(ends.shape[1])
    return xy, ends, [str(k) for k in range(ends.shape[1])], set(), queues


def network_figure(env_or_obs, values=None, ax=None, *, label: str | None = None):
    """Draw the road network; returns the matplotlib ``Figure``.

    ``env_or_obs``: a :class:`~fedhub.fl.rl.traffic.TrafficEnv` (intersections at their SUMO
    coordinates; roads coloured by the halting vehicles on them now, when an episode runs; a
    road blocked by the incident dashed red) or an observation ``Data`` (nodes on a square
    grid by index; roads coloured by the halting share, ``edge_attr[:, 1]``).
    ``values``: one number per road (``env.road_ids`` order, or per observed edge) to colour
    by instead. ``ax``: draw into these axes rather than a new figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    xy, ends, roads, blocked, queues = _layout(env_or_obs)
    if values is not None:
        queues = np.asarray(values, dtype=float)
        if queues.shape != (ends.shape[1],):
            raise ValueError(f"values: one per road expected ({ends.shape[1]}), got {queues.shape}")
    if label is None:
        label = "halting vehicles" if values is None else "value"
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 5.6))
    else:
        fig = ax.figure

    # the two directions of a road side by side: shift each to its right
    a, b = xy[ends[0]], xy[ends[1]]
    d = b - a
    length = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    shift = np.c_[d[:, 1], -d[:, 0]] / length * span * 0.015
    start, stop = a + shift + d * 0.12, b + shift - d * 0.12
    is_blocked = np.array([r in blocked for r in roads], dtype=bool)
    norm = Normalize(vmin=0.0, vmax=max(float(queues.max(initial=0.0)), 1e-9))
    open_roads = LineCollection(
        np.stack([start, stop], axis=1)[~is_blocked], cmap="viridis_r", norm=norm, linewidths=3
    )
    open_roads.set_array(queues[~is_blocked])
    ax.add_collection(open_roads)
    for s, t in zip(start[is_blocked], stop[is_blocked], strict=True):
        ax.plot(*np.c_[s, t], color=BLOCKED, linestyle="--", linewidth=3, label="blocked road")
    for s, t in zip(start, stop, strict=True):  # direction of travel
        ax.annotate("", xy=t, xytext=t - (t - s) * 0.05,
                    arrowprops={"arrowstyle": "-|>", "color": "#555", "lw": 0.8})  # fmt: skip
    ax.scatter(xy[:, 0], xy[:, 1], s=160, color="#333", zorder=3)
    for i, (x, y) in enumerate(xy):
        ax.annotate(str(i), (x, y), color="white", ha="center", va="center", fontsize=7, zorder=4)  # fmt: skip
    fig.colorbar(open_roads, ax=ax, label=label, shrink=0.8)
    if is_blocked.any():
        ax.legend(loc="upper right", fontsize=8)
    pad = span * 0.08
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)" if roads and not roads[0].isdigit() else "column")
    ax.set_ylabel("y (m)" if roads and not roads[0].isdigit() else "row")
    return fig


def rounds_figure(history, *, title: str | None = None):
    """Reward, mean delay and queue per round (three panels) from round records
    (``policy.history`` or ``result.history``); returns the ``Figure``."""
    import matplotlib.pyplot as plt

    rounds = [r.get("round", k) for k, r in enumerate(history)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    for ax, key, label in zip(
        axes,
        ("reward", "mean_delay", "queue"),
        ("reward (per intersection)", "mean delay (s / vehicle)", "queue (halting vehicles)"),
        strict=True,
    ):
        ys = [float(r.get(key, np.nan)) for r in history]
        ax.plot(rounds, ys, marker="o")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
