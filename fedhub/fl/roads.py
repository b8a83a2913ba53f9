"""Road-network graphs from SUMO: junctions as nodes, roads as edges, congestion as label.

``netgenerate`` builds a grid, spider or random network from a seed; the graph has one
node per junction (SUMO's internal junctions left out) and one undirected edge per pair of
junctions joined by a road in either direction. Node features, all from the ``.net.xml``:

=====  ===========================================================
0, 1   x, y scaled to [0, 1] over the network's bounding box
2      degree (neighbouring junctions)
3, 4   lanes of the incoming, of the outgoing roads
5, 6   mean and max speed limit of the incident roads (m/s)
7      1 if the junction has a traffic light, else 0
8      mean length of the incident roads (m)
=====  ===========================================================

Columns 2–8 are standardised over the network (mean 0, standard deviation 1).

The label is measured, not planted: SUMO's ``randomTrips.py`` draws seeded trips (about
three departures per junction per minute), the ``sumo`` binary runs them for
:data:`SIM_SECONDS` (a subprocess: libsumo allows one simulation per process) and writes
edge data; a junction's congestion is the delay on its incoming roads (the ``timeLoss`` of
their vehicles against free flow, per simulated second, averaged over the roads), and its
class is the tertile of that value over the network: 0 low, 1 medium, 2 high. Time loss
rather than halting time because it is non-zero on every road a vehicle used, so few
junctions tie at zero on a lightly loaded network. It is a node-classification task with a
real signal (queues form where lanes, lights and through traffic meet) that the static
features only partly explain, so accuracy well below 1 is expected.

Everything is cached per parameters in :func:`fedhub.fl.sumo.cache_dir` (a folder
private to the Unix account), as ``road-<key>.npz``; a second call with the same
parameters reads the arrays and runs no SUMO program.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .sumo import cache_dir, sumo_binary

NETWORKS = ("grid", "spider", "random")
SIM_SECONDS = 600
NUM_CLASSES = 3
FEATURES = ("x", "y", "degree", "lanes_in", "lanes_out", "speed_mean", "speed_max",
            "traffic_light", "length_mean")  # fmt: skip
#: part of the cache key: bump it when the features, the demand or the measurement change
CACHE_VERSION = 1
#: a road's length in metres for grid and spider networks
ROAD_LENGTH = 150.0


def netgenerate_args(network: str, size: int, seed: int) -> list[str]:
    """``netgenerate`` options of a network with about ``size * size`` junctions."""
    if network == "grid":
        shape = ["--grid", f"--grid.number={size}", f"--grid.length={ROAD_LENGTH}"]
    elif network == "spider":
        shape = ["--spider", f"--spider.arm-number={max(size, 3)}",
                 f"--spider.circle-number={size}", f"--spider.space-radius={ROAD_LENGTH}",
                 "--spider.omit-center=true"]  # fmt: skip
    elif network == "random":
        shape = ["--rand", f"--rand.iterations={2 * size * size}", "--rand.max-distance=250"]
    else:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
    return [*shape, f"--seed={seed}", "--default.lanenumber=1", "--tls.guess=true",
            "--no-turnarounds=true"]  # fmt: skip


def road_graph(network: str = "grid", size: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """The graph of a generated network with its measured congestion classes (cached):
    ``x`` (nodes × 9, see the module's table), ``edge_index`` (both directions), ``y``,
    ``delay`` (the measured value behind ``y``) and ``junction`` (SUMO ids)."""
    args = netgenerate_args(network, size, seed)
    binaries = [sumo_binary("netgenerate"), sumo_binary("sumo")]
    key_text = " ".join([*binaries, *args, str(SIM_SECONDS), f"v{CACHE_VERSION}"])
    key = hashlib.sha256(key_text.encode()).hexdigest()
    path = cache_dir() / f"road-{network}{size}-{key[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        net = Path(tmp) / "net.xml"
        _run([binaries[0], *args, "--output-file", str(net)], "netgenerate")
        graph = graph_of_net(net)
        graph["delay"] = measure_delay(net, graph["junction"], seed, Path(tmp))
        graph["y"] = tertiles(graph["delay"])
        fd, part = tempfile.mkstemp(suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **graph)
        os.replace(part, path)  # readers never see half a file
    return graph


def graph_of_net(net_file: Path) -> dict[str, np.ndarray]:
    """Nodes, undirected edges and features of a ``.net.xml`` (no label)."""
    import sumolib

    net = sumolib.net.readNet(str(net_file))
    nodes = [n for n in net.getNodes() if n.getType() != "internal"]
    index = {n.getID(): i for i, n in enumerate(nodes)}
    roads = [e for e in net.getEdges(withInternal=False)
             if e.getFromNode().getID() in index and e.getToNode().getID() in index]  # fmt: skip
    ends = np.array([(index[e.getFromNode().getID()], index[e.getToNode().getID()])
                     for e in roads], dtype=np.int64).reshape(-1, 2)  # fmt: skip
    lo, hi = ends.min(axis=1), ends.max(axis=1)
    pairs = np.unique(np.stack([lo, hi], axis=1)[lo != hi], axis=0)
    edge_index = np.concatenate([pairs, pairs[:, ::-1]]).T.copy()
    n = len(nodes)
    degree = np.bincount(edge_index[0], minlength=n)
    lanes_in, lanes_out = np.zeros(n), np.zeros(n)
    speed_sum, speed_max, length_sum, incident = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    for e, (a, b) in zip(roads, ends, strict=True):
        lanes_out[a] += e.getLaneNumber()
        lanes_in[b] += e.getLaneNumber()
        for v in (a, b):
            speed_sum[v] += e.getSpeed()
            speed_max[v] = max(speed_max[v], e.getSpeed())
            length_sum[v] += e.getLength()
            incident[v] += 1
    coords = np.array([n.getCoord()[:2] for n in nodes], dtype=np.float64)
    span = np.maximum(coords.max(axis=0) - coords.min(axis=0), 1e-9)
    tls = np.array([n.getType().startswith("traffic_light") for n in nodes], dtype=np.float64)
    per_road = np.maximum(incident, 1)
    rest = np.stack([degree, lanes_in, lanes_out, speed_sum / per_road, speed_max, tls,
                     length_sum / per_road], axis=1)  # fmt: skip
    rest = (rest - rest.mean(axis=0)) / np.where(rest.std(axis=0) > 0, rest.std(axis=0), 1.0)
    x = np.hstack([(coords - coords.min(axis=0)) / span, rest]).astype(np.float32)
    return {"x": x, "edge_index": edge_index.astype(np.int64),
            "junction": np.array([n.getID() for n in nodes])}  # fmt: skip


def measure_delay(net_file: Path, junctions: np.ndarray, seed: int, work: Path) -> np.ndarray:
    """Delay on each junction's incoming roads (their vehicles' time loss against free flow,
    in seconds per simulated second, averaged over the roads) in a seeded
    ``sumo`` run of random trips (about three departures per junction per minute)."""
    import sumo
    import sumolib

    trips, edgedata = work / "trips.xml", work / "edgedata.xml"
    period = 20.0 / max(len(junctions), 1)
    env = {**os.environ, "SUMO_HOME": str(sumo.SUMO_HOME)}
    random_trips = Path(sumo.SUMO_HOME) / "tools" / "randomTrips.py"
    _run([sys.executable, str(random_trips), "-n", str(net_file), "-o", str(trips),
          f"--seed={seed}", "-b", "0", "-e", str(SIM_SECONDS * 2 // 3), f"--period={period}",
          "--fringe-factor=5"], "randomTrips.py", env, cwd=work)  # fmt: skip
    _run([sumo_binary("sumo"), "-n", str(net_file), "-r", str(trips), f"--seed={seed}",
          "--end", str(SIM_SECONDS), "--edgedata-output", str(edgedata), "--no-step-log",
          "--no-warnings", "--duration-log.disable", "--time-to-teleport=120"],
         "sumo", env, cwd=work)  # fmt: skip
    lost = {e.get("id"): float(e.get("timeLoss", 0.0))
            for e in ET.parse(edgedata).getroot().iter("edge")}  # fmt: skip
    net = sumolib.net.readNet(str(net_file))
    delay = np.zeros(len(junctions))
    for i, jid in enumerate(junctions):
        incoming = [e for e in net.getNode(str(jid)).getIncoming() if e.getFunction() != "internal"]
        if incoming:
            delay[i] = np.mean([lost.get(e.getID(), 0.0) for e in incoming]) / SIM_SECONDS
    return delay


def tertiles(values: np.ndarray) -> np.ndarray:
    """Class 0, 1, 2 by the value's tertile (ties share the lower class)."""
    cuts = np.quantile(values, [1 / 3, 2 / 3])
    return np.searchsorted(cuts, values, side="left").astype(np.int64)


def _run(cmd: list[str], name: str, env: dict | None = None, cwd: Path | None = None) -> None:
    """Run a SUMO program (in ``cwd``: randomTrips.py leaves a ``routes.rou.xml`` there)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
