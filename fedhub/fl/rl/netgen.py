"""The road network and the demand of :mod:`fedhub.fl.rl.traffic`, as SUMO input files.

The network is SUMO's own ``netgenerate --grid`` with a road attached to every fringe
intersection, so each of the ``grid x grid`` intersections has four arms and a traffic
light whose default programme is two green phases (north-south, east-west, left turns
permitted) with yellows, one cycle per decision. It is built once per configuration into a
cache folder private to the Unix account (``$FEDHUB_TRAFFIC_CACHE`` or
``$TMPDIR/fedhub-traffic-<uid>``, mode 0700: another tenant cannot swap a net file).

Demand is a seeded list of trips written with numpy: Poisson arrivals at ``demand``
vehicles per second on the roads entering the grid; most trips run along a *main axis*
(west-east or north-south) that swaps at a seeded time when ``demand_shift`` is on. SUMO
routes each trip (fastest path at free flow) when the vehicle is loaded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sumo import cache_dir, sumo_binary

YELLOW_SECONDS = 3
MIN_GREEN_SECONDS = 5
# share of trips that start on the main axis, and that then cross to the opposite side
MAIN_AXIS_SHARE = 0.8
STRAIGHT_SHARE = 0.7
SIDES = ("west", "east", "south", "north")
OPPOSITE = {"west": "east", "east": "west", "south": "north", "north": "south"}
AXES = (("west", "east"), ("south", "north"))


def network_file(grid: int, length: float, lanes: int, cycle: int) -> Path:
    """The cached ``.net.xml`` of this grid, built by ``netgenerate`` the first time."""
    args = [
        "--grid",
        f"--grid.number={grid}",
        f"--grid.length={length}",
        f"--grid.attach-length={length}",
        f"--default.lanenumber={lanes}",
        "--tls.guess=true",
        f"--tls.cycle.time={cycle}",
        f"--tls.yellow.time={YELLOW_SECONDS}",
        "--no-turnarounds=true",
    ]
    binary = sumo_binary("netgenerate")
    key = hashlib.sha256(" ".join([binary, *args]).encode()).hexdigest()[:16]
    path = cache_dir() / f"grid{grid}-{key}.net.xml"
    if path.exists():
        return path
    # built beside and renamed: processes building the same net at once never read half a file
    fd, tmp = tempfile.mkstemp(suffix=".net.xml", dir=path.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [binary, *args, "--output-file", tmp], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"netgenerate failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@dataclass(frozen=True)
class Trip:
    id: str
    depart: float
    origin: str  # a road entering the grid
    destination: str  # a road leaving it


@dataclass(frozen=True)
class Scenario:
    """One episode's randomness: the trips, when the main axis swaps, the incident."""

    trips: tuple[Trip, ...]
    shift_time: float | None
    incident_edge: str | None
    incident_start: float
    incident_end: float


def draw_scenario(
    *,
    seed: int,
    seconds: int,
    demand: float,
    demand_shift: bool,
    incident: bool,
    entries: dict[str, list[str]],
    exits: dict[str, list[str]],
    inner_edges: list[str],
) -> Scenario:
    """Trips and the incident of one episode: a pure function of the seed and the config.

    ``entries``/``exits`` map a side of the grid to the roads entering/leaving it there;
    ``inner_edges`` are the roads between two intersections an incident may block.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7AFF1C]))
    axis_first = int(rng.integers(2))
    shift_time = float(rng.uniform(0.4, 0.6) * seconds) if demand_shift else None
    trips, t, n = [], 0.0, 0
    while True:
        t += float(rng.exponential(1.0 / demand))
        if t >= seconds:
            break
        axis = AXES[axis_first if shift_time is None or t < shift_time else 1 - axis_first]
        if rng.random() < MAIN_AXIS_SHARE:
            side = axis[int(rng.integers(2))]
        else:
            side = SIDES[int(rng.integers(4))]
        if rng.random() < STRAIGHT_SHARE:
            to_side = OPPOSITE[side]
        else:
            lateral = [s for s in SIDES if s not in (side, OPPOSITE[side])]
            to_side = lateral[int(rng.integers(2))]
        origin = entries[side][int(rng.integers(len(entries[side])))]
        destination = exits[to_side][int(rng.integers(len(exits[to_side])))]
        trips.append(Trip(f"v{n}", round(t, 1), origin, destination))
        n += 1
    edge, start, end = None, 0.0, 0.0
    if incident and inner_edges:
        edge = inner_edges[int(rng.integers(len(inner_edges)))]
        start = float(np.floor(rng.uniform(0.2, 0.45) * seconds))
        end = start + float(np.floor(rng.uniform(0.15, 0.3) * seconds))
    return Scenario(tuple(trips), shift_time, edge, start, end)


def write_routes(trips: tuple[Trip, ...], path: Path) -> None:
    lines = ['<routes>\n  <vType id="car" accel="2.6" decel="4.5" length="5" minGap="2.5"/>\n']
    for trip in trips:
        lines.append(
            f'  <trip id="{trip.id}" type="car" depart="{trip.depart:.1f}" from="{trip.origin}" '
            f'to="{trip.destination}" departLane="best" departSpeed="max"/>\n'
        )
    lines.append("</routes>\n")
    path.write_text("".join(lines))
