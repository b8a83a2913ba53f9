"""Road-network graphs from SUMO's netgenerate with congestion labels measured by a sumo run,
the road_network dataset, and mini-batch neighbour sampling of large client subgraphs
(issue #16, part 1)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from fedhub import fl
from fedhub.fl import graphs, roads
from fedhub.fl.registry import ParameterError
from fedhub.fl.sumo import sumo_binary


def net_file(tmp_path, network: str, size: int, seed: int = 0):
    path = tmp_path / f"{network}.net.xml"
    cmd = [sumo_binary("netgenerate"), *roads.netgenerate_args(network, size, seed), "-o", path]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path


def test_grid_graph_has_the_net_files_junctions_and_roads(tmp_path):
    path = net_file(tmp_path, "grid", 4)
    root = ET.parse(path).getroot()
    junctions = [j.get("id") for j in root.iter("junction") if j.get("type") != "internal"]
    roads_ = [(e.get("from"), e.get("to")) for e in root.iter("edge") if not e.get("function")]
    pairs = {frozenset(r) for r in roads_}
    graph = roads.graph_of_net(path)
    assert len(junctions) == 16 and len(roads_) == 48 and len(pairs) == 24  # 4x4, two-way
    assert sorted(graph["junction"].tolist()) == sorted(junctions)
    assert graph["edge_index"].shape == (2, 2 * len(pairs))
    ids = graph["junction"]
    got = {frozenset((ids[a], ids[b])) for a, b in graph["edge_index"].T}
    assert got == pairs
    assert graph["x"].shape == (16, len(roads.FEATURES)) and np.isfinite(graph["x"]).all()
    assert graph["x"][:, :2].min() == 0.0 and graph["x"][:, :2].max() == 1.0


@pytest.mark.parametrize("network", ["spider", "random"])
def test_other_networks_give_symmetric_graphs_with_all_features(tmp_path, network):
    graph = roads.graph_of_net(net_file(tmp_path, network, 4, seed=2))
    n = len(graph["junction"])
    assert n > 8 and graph["x"].shape == (n, 9)
    forward = {tuple(e) for e in graph["edge_index"].T}
    assert forward == {(b, a) for a, b in forward}


def test_labels_are_measured_tertiles_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDHUB_TRAFFIC_CACHE", str(tmp_path))
    graph = roads.road_graph("spider", 4, seed=0)
    assert len(set(graph["y"].tolist())) >= 2
    assert (graph["delay"] >= 0).all() and graph["delay"].max() > 0
    assert np.array_equal(graph["y"], roads.tertiles(graph["delay"]))
    low, high = graph["delay"][graph["y"] == 0], graph["delay"][graph["y"] == 2]
    assert low.max() <= high.min()
    [cached] = tmp_path.glob("road-*.npz")
    mtime = cached.stat().st_mtime_ns
    again = roads.road_graph("spider", 4, seed=0)
    assert cached.stat().st_mtime_ns == mtime  # read, not rebuilt
    assert all(np.array_equal(graph[k], again[k]) for k in graph)


def test_road_network_trains_through_experiment(dask_client):
    data = fl.datasets.get("road_network", num_clients=3, network="random", size=8, seed=0)
    assert data.kind == "graph" and data.num_classes == 3 and data.num_features == 9
    assert data.params["num_nodes"] == sum(len(c["y"]) for c in data.clients)
    factory = fl.models.factory("sage", in_features=9, num_classes=3, hidden=32)
    exp = fl.Experiment(model=factory, data=data, rounds=20, clients_per_round=3,
                        local_epochs=5, lr=0.3)  # fmt: skip
    result = exp.run(client=dask_client, progress=None)
    assert result.final_accuracy > 0.5  # three balanced classes: chance is ~1/3


@pytest.mark.parametrize(
    ("params", "field"),
    [({"network": "hexagon"}, "dataset_params.network"), ({"size": 200}, "dataset_params.size"),
     ({"minibatch_nodes": -1}, "dataset_params.minibatch_nodes")],
)  # fmt: skip
def test_road_network_bounds(params, field):
    with pytest.raises(ParameterError) as info:
        fl.datasets.registry.get("road_network", **params)
    assert info.value.field == field


def test_service_spec_takes_road_network():
    from fedhub.errors import InvalidRequest
    from fedhub.services.experiments.spec import model_name, parse_spec

    spec = parse_spec({"dataset": "road_network", "dataset_params": {"network": "spider"}})
    assert model_name(spec) == "sage"
    with pytest.raises(InvalidRequest, match="dataset_params.size: must be at most 30"):
        parse_spec({"dataset": "road_network", "dataset_params": {"size": 99}})


# ------------------------------------------------------------------ neighbour sampling
@pytest.fixture(scope="module")
def community():
    return graphs.community_graph(num_nodes=2000, num_communities=8, num_classes=4,
                                  num_features=16, seed=3)  # fmt: skip


def test_sampled_edges_exist_and_fanouts_hold(community):
    edge_index = community["edge_index"]
    sampler = graphs.NeighbourSampler(edge_index, 2000, fanouts=(10, 5))
    seeds = np.random.default_rng(0).choice(2000, 64, replace=False)
    nodes, sub = sampler.sample(seeds, np.random.default_rng(1))
    assert np.array_equal(nodes[:64], seeds) and len(set(nodes.tolist())) == len(nodes)
    existing = {tuple(e) for e in edge_index.T}
    assert all((nodes[a], nodes[b]) in existing for a, b in sub.T)
    in_degree = np.bincount(sub[1], minlength=len(nodes))
    full_degree = np.bincount(edge_index[1], minlength=2000)
    assert np.array_equal(in_degree[:64], np.minimum(full_degree[seeds], 10))
    assert in_degree[64:].max() <= 5 and in_degree[64:].max() == 5
    assert len({tuple(e) for e in sub.T}) == sub.shape[1]  # no edge twice


def test_same_seed_same_batch(community):
    sampler = graphs.NeighbourSampler(community["edge_index"], 2000)
    seeds = np.arange(0, 2000, 40)
    a = sampler.sample(seeds, np.random.default_rng(7))
    b = sampler.sample(seeds, np.random.default_rng(7))
    c = sampler.sample(seeds, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (len(a[0]) == len(c[0]) and np.array_equal(a[0], c[0]))


def test_minibatch_training_matches_full_batch(dask_client):
    common = {"num_clients": 2, "num_nodes": 2400, "num_communities": 8, "num_classes": 4,
              "num_features": 16, "train_fraction": 0.3, "seed": 1}  # fmt: skip
    factory = fl.models.factory("sage", in_features=16, num_classes=4, hidden=16)
    results = {}
    for minibatch_nodes in (0, 500):  # clients hold ~1200 nodes: 500 turns sampling on
        data = fl.datasets.get("sbm_large", minibatch_nodes=minibatch_nodes, batch_nodes=128,
                               **common)  # fmt: skip
        exp = fl.Experiment(model=factory, data=data, rounds=5, clients_per_round=2,
                            local_epochs=3, lr=0.3)  # fmt: skip
        results[minibatch_nodes] = exp.run(client=dask_client, progress=None)
    full, sampled = results[0].final_accuracy, results[500].final_accuracy
    assert sampled > 0.6 and abs(sampled - full) < 0.1, (full, sampled)
    # the workers did sample: the two runs' losses differ from the first round on
    assert results[0].history[0]["test_loss"] != results[500].history[0]["test_loss"]


def test_minibatch_steps_per_epoch():
    import torch

    from fedhub.fl.training import ClientJob, FlatModel, to_tensors, train_client

    data = fl.datasets.get("sbm_large", num_clients=1, num_nodes=1000, num_communities=4,
                           num_classes=4, num_features=16, train_fraction=0.3, seed=0)  # fmt: skip
    client = to_tensors(data.clients[0])
    train_nodes = int(client["train_mask"].sum())
    fm = FlatModel(fl.models.factory("sage", in_features=16, num_classes=4, hidden=8)())
    start = torch.from_numpy(fm.get())
    steps = {}
    for name, sampling in [("full", None), ("small", graphs.NeighbourSampling(2000, 64)),
                           ("large", graphs.NeighbourSampling(500, 64))]:  # fmt: skip
        result = train_client(fm, client, start, ClientJob(0, 2), rnd=1, seed=0, lr=0.1,
                              batch_size=None, kind="graph", sampling=sampling)  # fmt: skip
        steps[name] = result.steps
        assert result.num_examples == train_nodes
    # below the threshold nothing changes; above it, one step per batch of 64 seed nodes
    assert steps == {"full": 2, "small": 2, "large": 2 * -(-train_nodes // 64)}
