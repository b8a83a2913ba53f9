"""Traffic-signal control on a SUMO grid as a graph environment for multi-agent RL.

Every intersection is an agent and a node of the observation graph; every road between two
intersections is a directed edge. Each decision (``decision_seconds``, one signal cycle) an
agent's action in ``[-1, 1]^A`` (one number per green phase) becomes that cycle's green
split: each phase keeps :data:`~fedhub.fl.rl.netgen.MIN_GREEN_SECONDS`, the rest of the cycle
after the yellows is shared in proportion to ``(a + 1) / 2`` (all equal: an equal split,
which is SUMO's default programme, so the zero action is fixed-time control). The
programme is installed with ``trafficlight.setProgramLogic`` at the start of the cycle, so
every green ends with its yellow.

One incident per episode (``incident=True``): at a seeded time a seeded road between two
intersections gets a speed limit of zero on all its lanes, which stops every vehicle on it
and queues those behind, for a seeded duration. Drivers already routed over it are
re-routed around it when it is blocked and when they enter the network. While it lasts the
road's edge leaves ``edge_index``; it comes back when the road reopens.

Observation (:class:`torch_geometric.data.Data`), every value scaled by the road's
capacity (lane length / 7.5 m per lane) unless said otherwise:

- ``x [N, node_dim]``: per arm in the order north, east, south, west: halting vehicles on
  the incoming road, vehicles on it, vehicles on the outgoing road; then per green phase its
  pressure (vehicles on the lanes it lets in minus on the lanes they lead to, per lane
  capacity); then per green phase its share of the last cycle's green. ``feature_names``
  names the columns.
- ``edge_index [2, E]`` and ``edge_attr [E, 3]``: per open road, vehicles, halting vehicles
  and mean speed / speed limit.

Reward of an intersection: minus the waiting time accumulated on its incoming roads during
the decision (halting vehicle-seconds), divided by ``10 * decision_seconds`` (so minus the
mean queue / 10). Summed over intersections it is the network's waiting time.

Delay (``info["mean_delay"]``, the benchmarks' metric): mean time loss per vehicle in
seconds (SUMO's ``timeLoss``, time lost to driving below the speed limit, plus the wait to
enter the network) over every vehicle due to have departed: arrived, still driving, and
still waiting to enter. Counting the last two keeps a policy that gridlocks the network
from looking good by finishing few trips.

libsumo runs one simulation per process: a second open :class:`TrafficEnv` in the same
process is refused (close the first). The simulation starts at :meth:`TrafficEnv.reset`.
"""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sumolib
import torch
from torch_geometric.data import Data

from .netgen import (
    MIN_GREEN_SECONDS,
    YELLOW_SECONDS,
    draw_scenario,
    network_file,
    write_routes,
)

ARMS = ("north", "east", "south", "west")
VEHICLE_SPACE = 7.5  # metres per queued vehicle (length + gap): a lane's capacity
EDGE_FEATURES = ("vehicles", "halting", "speed")


@dataclass
class TrafficConfig:
    grid: int = 4  # grid x grid intersections (netgenerate --grid)
    length: float = 200.0  # metres between intersections
    lanes: int = 2
    episode_seconds: int = 900  # simulated seconds per episode
    decision_seconds: int = 30  # one action (a cycle's green split) per intersection per decision
    demand: float = 0.25  # vehicles/s entering the network (seeded Poisson arrivals)
    demand_shift: bool = True  # the main flow direction changes during the episode
    incident: bool = True  # one incident per episode: a road blocked for a while
    seed: int = 0  # demand and incident seed

    def __post_init__(self):
        least = 2 * (MIN_GREEN_SECONDS + YELLOW_SECONDS)
        checks = [
            (2 <= self.grid <= 10, "grid must be between 2 and 10"),
            (50 <= self.length <= 1000, "length must be between 50 and 1000 metres"),
            (1 <= self.lanes <= 4, "lanes must be between 1 and 4"),
            (
                least <= self.decision_seconds <= 180,
                f"decision_seconds must be between {least} and 180",
            ),  # fmt: skip
            (
                self.episode_seconds >= self.decision_seconds,
                "episode_seconds must be at least decision_seconds",
            ),  # fmt: skip
            (0 < self.demand <= 5, "demand must be in (0, 5] vehicles per second"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def _arm(dx: float, dy: float) -> int:
    if abs(dy) > abs(dx):
        return 0 if dy > 0 else 2
    return 1 if dx > 0 else 3


def _quiet_libsumo():
    # libsumo warns on import that pyarrow differs from the Arrow it was built with: that
    # matters only for Parquet output, which fedhub does not use
    with contextlib.redirect_stdout(io.StringIO()):
        import libsumo
    return libsumo


# the environment whose simulation libsumo runs (one per process); a weak reference, so an
# environment dropped without close() does not hold the slot for ever
_owner: weakref.ref[TrafficEnv] | None = None


class TrafficEnv:
    """A Gymnasium-like multi-agent environment (see the module docstring)."""

    def __init__(self, config: TrafficConfig, *, workdir: str | None = None):
        self.config = config
        c = config
        self.net_file = network_file(c.grid, c.length, c.lanes, c.decision_seconds)
        net = sumolib.net.readNet(str(self.net_file), withPrograms=True)
        nodes = sorted(
            (n for n in net.getNodes() if n.getType() == "traffic_light"),
            key=lambda n: n.getCoord(),
        )
        self.node_ids = [n.getID() for n in nodes]
        self.num_agents = len(nodes)
        index = {nid: i for i, nid in enumerate(self.node_ids)}
        xs = [n.getCoord()[0] for n in nodes]
        ys = [n.getCoord()[1] for n in nodes]
        self._capacity = {}
        self._speed = {}
        for e in net.getEdges():
            self._capacity[e.getID()] = e.getLaneNumber() * e.getLength() / VEHICLE_SPACE
            self._speed[e.getID()] = e.getSpeed()

        # arms: per node, the incoming and outgoing road in each direction
        self._arms_in = [[None] * 4 for _ in nodes]
        self._arms_out = [[None] * 4 for _ in nodes]
        entries = {s: [] for s in ("west", "east", "south", "north")}
        exits = {s: [] for s in entries}
        for i, n in enumerate(nodes):
            x, y = n.getCoord()
            for e in n.getIncoming():
                ox, oy = e.getFromNode().getCoord()
                self._arms_in[i][_arm(ox - x, oy - y)] = e.getID()
            for e in n.getOutgoing():
                ox, oy = e.getToNode().getCoord()
                self._arms_out[i][_arm(ox - x, oy - y)] = e.getID()

        def side(node) -> str:
            x, y = node.getCoord()
            if x < min(xs):
                return "west"
            if x > max(xs):
                return "east"
            return "south" if y < min(ys) else "north"

        roads = []
        for e in net.getEdges():
            a, b = e.getFromNode().getID(), e.getToNode().getID()
            if a in index and b in index:
                roads.append((e.getID(), index[a], index[b]))
            elif b in index:
                entries[side(e.getFromNode())].append(e.getID())
            elif a in index:
                exits[side(e.getToNode())].append(e.getID())
        roads.sort(key=lambda r: (r[1], r[2]))
        self.road_ids = [r[0] for r in roads]
        self._road_ends = np.array([[r[1] for r in roads], [r[2] for r in roads]], dtype=np.int64)
        self._entries = {s: sorted(v) for s, v in entries.items()}
        self._exits = {s: sorted(v) for s, v in exits.items()}
        self._watched = sorted({e for arms in self._arms_in + self._arms_out for e in arms if e})

        # signal programmes: the default one of each light, its green phases, their links
        self._programme = []
        self._pressure_links = []
        for nid in self.node_ids:
            phases = [(float(p.duration), p.state) for p in net.getTLS(nid).getPrograms()["0"].getPhases()]  # fmt: skip
            self._programme.append(phases)
            links = {}
            for in_lane, out_lane, link in net.getTLS(nid).getConnections():
                links[link] = (in_lane.getID(), out_lane.getID(), in_lane.getLength())
            greens = [k for k, (_, s) in enumerate(phases) if "y" not in s and s.lower().count("g")]
            self._pressure_links.append(
                [
                    [links[j] for j, ch in enumerate(phases[k][1]) if ch in "Gg" and j in links]
                    for k in greens
                ]  # fmt: skip
            )
        self._greens = [k for k, (_, s) in enumerate(self._programme[0]) if "y" not in s and "g" in s.lower()]  # fmt: skip
        self.action_dim = len(self._greens)
        if any(len(p) != self.action_dim for p in self._pressure_links):
            raise RuntimeError("intersections with different numbers of green phases")
        self._yellow_total = sum(d for k, (d, _) in enumerate(self._programme[0]) if k not in self._greens)  # fmt: skip
        self.feature_names = (
            [f"{arm}_{f}" for arm in ARMS for f in ("in_halting", "in_vehicles", "out_vehicles")]
            + [f"pressure_{p}" for p in range(self.action_dim)]
            + [f"green_share_{p}" for p in range(self.action_dim)]
        )
        self.node_dim = len(self.feature_names)
        self.edge_dim = len(EDGE_FEATURES)

        self.workdir = Path(tempfile.mkdtemp(prefix="fedhub-episode-") if workdir is None else workdir)  # fmt: skip
        # a folder of our own goes at close(), or when the environment is dropped unclosed
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.workdir, True) if workdir is None else None  # fmt: skip
        self._sumo = None
        self._episodes = 0
        self.scenario = None

    @property
    def sumo(self):
        """The libsumo module while an episode runs (to inspect the simulation), else None."""
        return self._sumo

    # ------------------------------------------------------------------ actions
    def green_times(self, actions: np.ndarray | None) -> np.ndarray:
        """Whole seconds of green per intersection and green phase for one cycle."""
        n, a = self.num_agents, self.action_dim
        flexible = int(self.config.decision_seconds - self._yellow_total - a * MIN_GREEN_SECONDS)
        if actions is None:
            weights = np.ones((n, a))
        else:
            actions = np.asarray(actions, dtype=np.float64).reshape(n, a)
            weights = (np.clip(np.nan_to_num(actions), -1.0, 1.0) + 1.0) / 2.0
            weights[weights.sum(axis=1) <= 1e-9] = 1.0
        exact = flexible * weights / weights.sum(axis=1, keepdims=True)
        seconds = np.floor(exact).astype(np.int64)
        # the seconds lost to rounding go to the largest remainders (ties: lower phase)
        for i in range(n):
            for p in np.argsort(-(exact[i] - seconds[i]), kind="stable")[: flexible - seconds[i].sum()]:  # fmt: skip
                seconds[i, p] += 1
        return seconds + MIN_GREEN_SECONDS

    def programme(self, node: int, greens: np.ndarray) -> list[tuple[int, str]]:
        """``(duration, state)`` phases of one intersection's cycle with these greens."""
        out = []
        for k, (duration, state) in enumerate(self._programme[node]):
            out.append((int(greens[self._greens.index(k)]) if k in self._greens else int(duration), state))  # fmt: skip
        return out

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> Data:
        """Start an episode: ``seed`` draws its demand and incident (default: the config's
        seed for the first episode, then seed + 1, + 2, ... for later ones)."""
        global _owner
        other = _owner() if _owner is not None else None
        if other is not None and other is not self:
            raise RuntimeError(
                "libsumo runs one simulation per process: close the other TrafficEnv first"
            )
        self._stop()
        ls = _quiet_libsumo()
        if ls.isLoaded():  # left running by an environment that was dropped unclosed
            ls.close()
        c = self.config
        seed = c.seed + self._episodes if seed is None else int(seed)
        self._episodes += 1
        self.seed = seed
        inner = list(self.road_ids)
        self.scenario = draw_scenario(
            seed=seed, seconds=c.episode_seconds, demand=c.demand,
            demand_shift=c.demand_shift, incident=c.incident,
            entries=self._entries, exits=self._exits, inner_edges=inner,
        )  # fmt: skip
        routes = self.workdir / "episode.rou.xml"
        write_routes(self.scenario.trips, routes)
        self._depart = {t.id: t.depart for t in self.scenario.trips}
        ls.start([
            "sumo", "-n", str(self.net_file), "-r", str(routes), "--step-length", "1",
            "--seed", str(seed % 2**31), "--no-step-log", "--no-warnings",
            "--duration-log.disable", "--device.tripinfo.probability", "1",
            "--time-to-teleport", "300",
        ])  # fmt: skip
        _owner = weakref.ref(self)
        self._sumo = ls
        self.time = 0
        self.blocked: list[str] = []
        self.arrived = 0
        self.departed = 0
        self._last_greens = np.full((self.num_agents, self.action_dim), 1.0 / self.action_dim)
        return self._observe()

    def step(self, actions: np.ndarray | None) -> tuple[Data, np.ndarray, bool, dict]:
        """One cycle with these green splits (``None``: SUMO's default programme)."""
        ls = self._sumo
        if ls is None:
            raise RuntimeError("call reset() before step()")
        c = self.config
        if actions is not None:
            greens = self.green_times(actions)
            for i, nid in enumerate(self.node_ids):
                phases = [ls.trafficlight.Phase(d, s) for d, s in self.programme(i, greens[i])]
                ls.trafficlight.setProgramLogic(nid, ls.trafficlight.Logic("0", 0, 0, phases))
                ls.trafficlight.setPhase(nid, 0)
            self._last_greens = greens / greens.sum(axis=1, keepdims=True)
        else:
            self._last_greens = np.full((self.num_agents, self.action_dim), 1.0 / self.action_dim)
        halting = np.zeros(self.num_agents)
        for _ in range(c.decision_seconds):
            self._incident_tick()
            ls.simulationStep()
            self.time += 1
            self.departed += ls.simulation.getDepartedNumber()
            self.arrived += ls.simulation.getArrivedNumber()
            if self.blocked:
                self._reroute(ls.simulation.getDepartedIDList())
            for i, arms in enumerate(self._arms_in):
                halting[i] += sum(ls.edge.getLastStepHaltingNumber(e) for e in arms if e)
        reward = -halting / (10.0 * c.decision_seconds)
        done = self.time >= c.episode_seconds
        obs = self._observe()
        info = {
            "time": self.time,
            "mean_delay": self.mean_delay(),
            "queue": int(sum(ls.edge.getLastStepHaltingNumber(e) for e in self._watched)),
            "incident": bool(self.blocked),
            "blocked_edges": list(self.blocked),
            "arrived": self.arrived,
            "departed": self.departed,
        }
        return obs, reward.astype(np.float32), done, info

    def close(self) -> None:
        self._stop()
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _stop(self) -> None:
        global _owner
        if self._sumo is not None:
            self._sumo.close()
            self._sumo = None
        if _owner is not None and _owner() is self:
            _owner = None

    # ------------------------------------------------------------------ incident
    def _incident_tick(self) -> None:
        s = self.scenario
        if s.incident_edge is None:
            return
        ls, edge = self._sumo, s.incident_edge
        lanes = [f"{edge}_{k}" for k in range(ls.edge.getLaneNumber(edge))]
        if self.time == s.incident_start:
            for lane in lanes:
                ls.lane.setMaxSpeed(lane, 0.0)
            ls.edge.adaptTraveltime(edge, 1e6)
            self.blocked = [edge]
            self._reroute(ls.vehicle.getIDList())
        elif self.time == s.incident_end and self.blocked:
            for lane in lanes:
                ls.lane.setMaxSpeed(lane, self._speed[edge])
            ls.edge.adaptTraveltime(edge, ls.lane.getLength(lanes[0]) / self._speed[edge])
            self.blocked = []

    def _reroute(self, vehicles) -> None:
        ls = self._sumo
        for v in vehicles:
            route = ls.vehicle.getRoute(v)
            ahead = route[max(ls.vehicle.getRouteIndex(v), 0) + 1 :]
            if any(e in self.blocked for e in ahead):
                ls.vehicle.rerouteTraveltime(v, False)

    # ------------------------------------------------------------------ observation
    def _observe(self) -> Data:
        ls = self._sumo
        veh = {e: ls.edge.getLastStepVehicleNumber(e) / self._capacity[e] for e in self._watched}
        halt = {e: ls.edge.getLastStepHaltingNumber(e) / self._capacity[e] for e in self._watched}
        x = np.zeros((self.num_agents, self.node_dim), dtype=np.float32)
        lane_veh: dict[str, int] = {}

        def on_lane(lane: str) -> int:
            if lane not in lane_veh:
                lane_veh[lane] = ls.lane.getLastStepVehicleNumber(lane)
            return lane_veh[lane]

        for i in range(self.num_agents):
            for k in range(4):
                e_in, e_out = self._arms_in[i][k], self._arms_out[i][k]
                x[i, 3 * k] = halt[e_in] if e_in else 0.0
                x[i, 3 * k + 1] = veh[e_in] if e_in else 0.0
                x[i, 3 * k + 2] = veh[e_out] if e_out else 0.0
            for p, links in enumerate(self._pressure_links[i]):
                x[i, 12 + p] = sum(
                    (on_lane(a) - on_lane(b)) * VEHICLE_SPACE / length for a, b, length in links
                )
            x[i, 12 + self.action_dim :] = self._last_greens[i]
        keep = [k for k, e in enumerate(self.road_ids) if e not in self.blocked]
        attr = np.zeros((len(keep), self.edge_dim), dtype=np.float32)
        for row, k in enumerate(keep):
            e = self.road_ids[k]
            attr[row] = (
                ls.edge.getLastStepVehicleNumber(e) / self._capacity[e],
                ls.edge.getLastStepHaltingNumber(e) / self._capacity[e],
                ls.edge.getLastStepMeanSpeed(e) / self._speed[e],
            )
        return Data(
            x=torch.from_numpy(x),
            edge_index=torch.from_numpy(self._road_ends[:, keep].copy()),
            edge_attr=torch.from_numpy(attr),
            num_nodes=self.num_agents,
        )

    def mean_delay(self) -> float:
        """Mean time loss per vehicle so far, seconds (see the module docstring)."""
        ls = self._sumo
        stat = "device.tripinfo.vehicleTripStatistics."
        done = int(float(ls.simulation.getParameter("", stat + "count") or 0))
        total = done * (
            float(ls.simulation.getParameter("", stat + "timeLoss") or 0)
            + float(ls.simulation.getParameter("", stat + "departDelay") or 0)
        )
        running = ls.vehicle.getIDList()
        for v in running:
            total += ls.vehicle.getTimeLoss(v) + ls.vehicle.getDepartDelay(v)
        waiting = [v for v in ls.simulation.getPendingVehicles() if v in self._depart]
        total += sum(max(self.time - self._depart[v], 0.0) for v in waiting)
        count = done + len(running) + len(waiting)
        return total / count if count else math.nan


def districts(env_or_config, k: int) -> list[list[int]]:
    """``k`` connected groups of intersections (node indices), as equal as the grid allows:
    rectangular blocks when ``k`` factors into rows x columns that fit the grid, otherwise
    consecutive runs along a snake through the grid."""
    config = getattr(env_or_config, "config", env_or_config)
    g = config.grid
    if not 1 <= k <= g * g:
        raise ValueError(f"districts: k must be between 1 and {g * g} (the intersections)")
    # node index = column * g + row (TrafficEnv sorts intersections by x, then y)
    shapes = [(r, k // r) for r in range(1, k + 1) if k % r == 0 and r <= g and k // r <= g]
    if shapes:
        rows, cols = min(shapes, key=lambda s: (abs(s[0] - s[1]), s[0]))
        groups = []
        for cs in np.array_split(np.arange(g), cols):
            for rs in np.array_split(np.arange(g), rows):
                groups.append(sorted(int(c * g + r) for c in cs for r in rs))
        return groups
    snake = [c * g + (r if c % 2 == 0 else g - 1 - r) for c in range(g) for r in range(g)]
    return [sorted(int(v) for v in part) for part in np.array_split(np.array(snake), k)]
