"""One large graph split into client subgraphs: generator, partitioners, edge cut, the
missing-neighbour features, and the local-only and centralised baselines.

The federated setting is FedGraphNN's subgraph node classification: one graph, each client
owns a set of nodes and the edges among them; an edge whose ends belong to two clients is
*cut* and lost to both. Partitioners return an owner per node (``owner[v]`` is a client
id); :func:`split` turns that into the engine's per-client graphs.

Missing neighbours (FedGCN, Yao et al. 2023, its one-hop variant): before training, every
client sends the server, for each cut edge ``(u, v)`` with ``u`` its own node, ``x[u]``
addressed to ``v``; the server sums what each node is sent and hands each client the sums
for its own nodes, once. A client appends ``sum / degree`` (its node's full degree, cut
edges included) to the node's features, so the first layer sees the average of *all* its
neighbours, as it would on the whole graph. Communication is one round of ``O(cut edges x
features)`` numbers; the server learns the features of boundary nodes' neighbours, which
is FedGCN's stated privacy cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .registry import Param, Registry
from .sampling import NeighbourSampler, NeighbourSampling  # noqa: F401  (graph API, re-exported)

registry = Registry("graph partitioner", field="dataset_params.partitioner")


@dataclass(frozen=True)
class EdgeCut:
    """How many undirected edges join nodes of two different clients."""

    cut: int
    total: int

    @property
    def fraction(self) -> float:
        return self.cut / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {"edges_cut": self.cut, "edges": self.total, "cut_fraction": self.fraction}


def undirected_pairs(edge_index: np.ndarray) -> np.ndarray:
    """Each undirected edge once, as ``(min, max)`` rows; self-loops dropped."""
    a, b = np.asarray(edge_index)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return np.unique(np.stack([lo[keep], hi[keep]], axis=1), axis=0)


def edge_cut(edge_index: np.ndarray, owner: np.ndarray) -> EdgeCut:
    pairs = undirected_pairs(edge_index)
    owner = np.asarray(owner)
    return EdgeCut(int((owner[pairs[:, 0]] != owner[pairs[:, 1]]).sum()), len(pairs))


# ------------------------------------------------------------------ partitioners
class GraphPartitioner:
    """``assign(edge_index, num_nodes, num_clients, seed)`` → owner client of every node."""

    name = "base"

    def assign(
        self, edge_index: np.ndarray, num_nodes: int, num_clients: int, seed: int = 0
    ) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@registry.register("random", params={})
class RandomNodes(GraphPartitioner):
    """Nodes dealt out at random in equal shares: the most edges cut, labels IID."""

    name = "random"

    def assign(self, edge_index, num_nodes, num_clients, seed=0):
        rng = np.random.default_rng([seed, 11])
        owner = np.empty(num_nodes, dtype=np.int64)
        for k, part in enumerate(np.array_split(rng.permutation(num_nodes), num_clients)):
            owner[part] = k
        return owner


@registry.register("metis", params={})
class Metis(GraphPartitioner):
    """METIS k-way (``pymetis``): balanced parts with few edges cut."""

    name = "metis"

    def assign(self, edge_index, num_nodes, num_clients, seed=0):
        import pymetis

        if num_clients == 1:
            return np.zeros(num_nodes, dtype=np.int64)
        pairs = undirected_pairs(edge_index)
        both = np.concatenate([pairs, pairs[:, ::-1]])
        order = np.lexsort((both[:, 1], both[:, 0]))
        adjncy = both[order, 1]
        xadj = np.concatenate([[0], np.cumsum(np.bincount(both[:, 0], minlength=num_nodes))])
        options = pymetis.Options(seed=seed)
        if hasattr(pymetis, "CSRAdjacency"):  # newer pymetis: the keywords are deprecated
            csr = pymetis.CSRAdjacency(xadj, adjncy)
            _, parts = pymetis.part_graph(num_clients, adjacency=csr, options=options)
        else:
            _, parts = pymetis.part_graph(num_clients, xadj=xadj, adjncy=adjncy, options=options)
        return np.asarray(parts, dtype=np.int64)


@registry.register("louvain", params={"resolution": Param(float, min=0.01, max=100.0)})
class Louvain(GraphPartitioner):
    """Louvain communities (``networkx``), packed onto clients largest first, each onto the
    client with the fewest nodes so far (FedSage+'s split)."""

    name = "louvain"

    def __init__(self, resolution: float = 1.0) -> None:
        self.resolution = resolution

    def assign(self, edge_index, num_nodes, num_clients, seed=0):
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(num_nodes))
        g.add_edges_from(undirected_pairs(edge_index).tolist())
        communities = nx.community.louvain_communities(g, resolution=self.resolution, seed=seed)
        communities = sorted((sorted(c) for c in communities), key=lambda c: (-len(c), c[0]))
        owner = np.empty(num_nodes, dtype=np.int64)
        load = np.zeros(num_clients, dtype=np.int64)
        for members in communities:
            k = int(np.argmin(load))
            owner[members] = k
            load[k] += len(members)
        return owner

    def __repr__(self) -> str:
        return f"Louvain(resolution={self.resolution})"


def get(name: str, **params) -> GraphPartitioner:
    """A graph partitioner by name: ``metis``, ``louvain``, ``random``."""
    return registry.get(name, **params)


# ------------------------------------------------------------------ the graph
def community_graph(
    num_nodes: int = 20_000,
    num_communities: int = 40,
    num_classes: int = 8,
    num_features: int = 32,
    avg_degree: float = 10.0,
    cross_fraction: float = 0.1,
    homophily: float = 0.7,
    label_purity: float = 0.6,
    feature_noise: float = 3.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A planted-partition graph (a stochastic block model sampled edge by edge).

    Node ``v`` lies in community ``c`` (equal sizes) and has class ``y``: the community's
    own class (``c mod num_classes``) with probability ``label_purity``, else uniform. Of
    the ``num_nodes * avg_degree / 2`` edges, ``cross_fraction`` join two uniform nodes;
    the rest stay inside a community and join two nodes of the same class with
    probability ``homophily``. Features are the class centroid plus Gaussian noise of
    scale ``feature_noise``, so features alone are weak and neighbours help.
    torch-geometric's ``stochastic_blockmodel_graph`` draws all ``N^2/2`` pairs (3 GB at
    20k nodes); drawing the edges directly keeps 100k nodes within a second or two.
    """
    import torch
    from torch_geometric.utils import to_undirected

    rng = np.random.default_rng([seed, 0x6A])
    community = rng.permutation(np.arange(num_nodes) % num_communities)
    y = np.where(
        rng.random(num_nodes) < label_purity,
        community % num_classes,
        rng.integers(0, num_classes, num_nodes),
    )
    num_edges = int(num_nodes * avg_degree / 2)
    src = rng.integers(0, num_nodes, num_edges)
    kind = rng.random(num_edges)
    cross = kind < cross_fraction
    same_class = kind >= cross_fraction + (1 - cross_fraction) * (1 - homophily)
    dst = rng.integers(0, num_nodes, num_edges)  # the cross edges' ends
    inside = ~cross & ~same_class
    dst[inside] = _pick(rng, community, community[src[inside]])
    group = community * num_classes + y
    dst[same_class] = _pick(rng, group, group[src[same_class]])
    centroids = rng.normal(0, 1, (num_classes, num_features))
    x = centroids[y] + feature_noise * rng.standard_normal((num_nodes, num_features))
    edge_index = to_undirected(
        torch.from_numpy(np.stack([src, dst])[:, src != dst]), num_nodes=num_nodes
    ).numpy()
    return {"x": x.astype(np.float32), "edge_index": edge_index, "y": y.astype(np.int64),
            "community": community}  # fmt: skip


def _pick(rng, group: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """One uniform node of group ``wanted[i]`` for each ``i`` (a group is never empty
    here: ``wanted`` comes from existing nodes)."""
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group, minlength=int(group.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offset = (rng.random(len(wanted)) * sizes[wanted]).astype(np.int64)
    return order[starts[wanted] + offset]


def node_split(y: np.ndarray, train_fraction: float, test_fraction: float, seed: int):
    """Train and test masks over all nodes (the rest is unlabelled)."""
    r = np.random.default_rng([seed, 0x5B]).random(len(y))
    return r < train_fraction, r >= 1 - test_fraction


# ------------------------------------------------------------------ missing neighbours
def neighbour_contributions(
    x: np.ndarray, edge_index: np.ndarray, owner: np.ndarray, client: int
) -> tuple[np.ndarray, np.ndarray]:
    """What ``client`` sends the server: for each foreign node with a neighbour here, the
    sum of those neighbours' features (target node ids, sums)."""
    src, dst = np.asarray(edge_index)
    mine = (owner[src] == client) & (owner[dst] != client)
    targets, inverse = np.unique(dst[mine], return_inverse=True)
    sums = np.zeros((len(targets), x.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, x[src[mine]])
    return targets, sums


def missing_neighbour_sums(
    x: np.ndarray, edge_index: np.ndarray, owner: np.ndarray, num_clients: int
) -> np.ndarray:
    """The server's sum of all clients' contributions: row ``v`` is the sum of the
    features of ``v``'s neighbours held by other clients (``edge_index`` directed both
    ways, as torch-geometric stores undirected graphs)."""
    total = np.zeros(x.shape, dtype=np.float64)
    for k in range(num_clients):
        targets, sums = neighbour_contributions(x, edge_index, owner, k)
        total[targets] += sums
    return total


# ------------------------------------------------------------------ split into clients
def split(
    graph: dict[str, np.ndarray],
    owner: np.ndarray,
    num_clients: int,
    train_mask: np.ndarray,
    test_mask: np.ndarray,
    neighbour_features: bool = False,
) -> list[dict[str, np.ndarray]]:
    """The clients' subgraphs (local node ids, ``node_id`` maps back to the graph's)."""
    x, edge_index, y = graph["x"], graph["edge_index"], graph["y"]
    if neighbour_features:
        degree = np.bincount(edge_index[0], minlength=len(y)).astype(np.float64)
        missing = missing_neighbour_sums(x, edge_index, owner, num_clients)
        x = np.hstack([x, missing / np.maximum(degree, 1)[:, None]]).astype(np.float32)
    local = np.empty(len(y), dtype=np.int64)
    clients = []
    src, dst = edge_index
    kept = owner[src] == owner[dst]
    for k in range(num_clients):
        nodes = np.flatnonzero(owner == k)
        local[nodes] = np.arange(len(nodes))
        mine = kept & (owner[src] == k)
        clients.append(
            {
                "x": x[nodes],
                "edge_index": local[edge_index[:, mine]],
                "y": y[nodes],
                "train_mask": train_mask[nodes],
                "test_mask": test_mask[nodes],
                "node_id": nodes,
            }
        )
    return clients


# ------------------------------------------------------------------ baselines
def whole_graph_client(graph, train_mask, test_mask, neighbour_features: bool = False) -> dict:
    """The whole graph as one client (centralised training); with ``neighbour_features``
    the appended block is zeros, since no neighbour is missing."""
    x = graph["x"]
    if neighbour_features:
        x = np.hstack([x, np.zeros_like(x)])
    return {"x": x, "edge_index": graph["edge_index"], "y": graph["y"],
            "train_mask": train_mask, "test_mask": test_mask}  # fmt: skip


def train_alone(
    model: Callable,
    client: dict,
    steps: int,
    lr: float,
    seed: int = 0,
    sampling: NeighbourSampling | None = None,
) -> tuple[int, int, float]:
    """Train one model on one graph with the engine's own client update (full-batch SGD,
    ``steps`` epochs, or mini-batches when ``sampling`` applies), and score it on that
    graph's test nodes: (correct, total, seconds).
    The local-only baseline calls it once per client, the centralised one on the whole
    graph."""
    import torch

    from .training import ClientJob, FlatModel, evaluate, to_tensors, train_client

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fm = FlatModel(model())
    start = torch.from_numpy(fm.get())
    train_client(fm, to_tensors(client), start, ClientJob(0, steps), rnd=1, seed=seed,
                 lr=lr, batch_size=None, kind="graph", sampling=sampling)  # fmt: skip
    _, acc = evaluate(fm, [client], "graph")
    total = int(client["test_mask"].sum())
    return round(acc * total), total, time.perf_counter() - t0


def local_only(model: Callable, clients: list[dict], steps: int, lr: float, seed: int = 0):
    """Each client trains alone and is scored on its own test nodes; returns the pooled
    accuracy (correct over all clients' test nodes) and the per-client accuracies."""
    scores = [train_alone(model, c, steps, lr, seed) for c in clients]
    correct, total = sum(s[0] for s in scores), sum(s[1] for s in scores)
    return correct / max(total, 1), [s[0] / max(s[1], 1) for s in scores]
