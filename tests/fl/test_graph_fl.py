"""Federated GNNs on one partitioned graph: partitioners, edge cut, missing-neighbour
features, GraphSAGE/GAT through fl.Experiment, parameter bounds (issue #16)."""

from __future__ import annotations

import numpy as np
import pytest

from fedhub import fl
from fedhub.fl import graphs
from fedhub.fl.registry import ParameterError

# two triangles (0, 1, 2) and (3, 4, 5) joined by the edge 2-3, and an isolated node 6;
# stored both ways, as torch-geometric stores undirected graphs
PAIRS = [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]
EDGES = np.array(PAIRS + [(b, a) for a, b in PAIRS]).T


def hand_cut(owner) -> int:
    return sum(owner[a] != owner[b] for a, b in PAIRS)


@pytest.mark.parametrize("name", ["metis", "louvain", "random"])
def test_partitioner_covers_every_node_once(name):
    graph = graphs.community_graph(num_nodes=600, num_communities=6, seed=1)
    owner = graphs.get(name).assign(graph["edge_index"], 600, 4, seed=0)
    assert owner.shape == (600,) and set(owner.tolist()) == {0, 1, 2, 3}
    train, test = graphs.node_split(graph["y"], 0.5, 0.3, seed=0)
    clients = graphs.split(graph, owner, 4, train, test)
    ids = np.concatenate([c["node_id"] for c in clients])
    assert np.array_equal(np.sort(ids), np.arange(600))  # each node exactly once
    kept = sum(c["edge_index"].shape[1] for c in clients) // 2
    cut = graphs.edge_cut(graph["edge_index"], owner)
    assert kept + cut.cut == cut.total


@pytest.mark.parametrize("name", ["metis", "louvain", "random"])
def test_edge_cut_report_on_a_hand_made_graph(name):
    owner = graphs.get(name).assign(EDGES, 7, 2, seed=0)
    cut = graphs.edge_cut(EDGES, owner)
    assert cut.total == 7
    assert cut.cut == hand_cut(owner)
    assert cut.fraction == pytest.approx(hand_cut(owner) / 7)
    if name == "louvain":  # the two triangles are the two communities
        assert cut.cut == 1


def test_edge_cut_of_a_given_split():
    owner = np.array([0, 0, 1, 1, 1, 0, 0])
    assert graphs.edge_cut(EDGES, owner).as_dict() == {
        "edges_cut": 4,  # 1-2, 0-2, 3-5, 4-5
        "edges": 7,
        "cut_fraction": 4 / 7,
    }


def test_missing_neighbour_features_by_hand():
    # the path 0-1-2-3, clients {0, 1} and {2, 3}
    edges = np.array([[0, 1], [1, 2], [2, 3], [1, 0], [2, 1], [3, 2]]).T
    owner = np.array([0, 0, 1, 1])
    x = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]], dtype=np.float32)
    targets, sums = graphs.neighbour_contributions(x, edges, owner, 0)
    assert targets.tolist() == [2] and sums.tolist() == [[2.0, 20.0]]
    total = graphs.missing_neighbour_sums(x, edges, owner, 2)
    assert total.tolist() == [[0, 0], [4, 40], [2, 20], [0, 0]]
    graph = {"x": x, "edge_index": edges, "y": np.zeros(4, dtype=np.int64)}
    mask = np.ones(4, dtype=bool)
    clients = graphs.split(graph, owner, 2, mask, mask, neighbour_features=True)
    # node 1 has degree 2 (0 and the missing 2): 4 / 2; node 2 likewise: 2 / 2
    assert clients[0]["x"].tolist() == [[1, 10, 0, 0], [2, 20, 2, 20]]
    assert clients[1]["x"].tolist() == [[4, 40, 1, 10], [8, 80, 0, 0]]
    assert clients[0]["edge_index"].tolist() == [[0, 1], [1, 0]]


@pytest.fixture(scope="module")
def small_graph():
    return fl.datasets.get(
        "sbm_large", num_clients=4, num_nodes=1200, num_communities=8, num_classes=4,
        num_features=16, partitioner="metis", train_fraction=0.3, seed=0,
    )  # fmt: skip


def test_sbm_large_reports_its_split(small_graph):
    assert small_graph.kind == "graph" and small_graph.num_clients == 4
    cut = small_graph.params["edge_cut"]
    assert 0 < cut["edges_cut"] < cut["edges"] and cut["cut_fraction"] < 0.5
    assert sum(len(c["y"]) for c in small_graph.clients) == 1200


@pytest.mark.parametrize(
    ("model", "params"), [("sage", {"hidden": 16}), ("gat", {"hidden": 8, "heads": 2})]
)
def test_gnn_trains_through_experiment(small_graph, dask_client, model, params):
    factory = fl.models.factory(model, in_features=small_graph.num_features,
                                num_classes=small_graph.num_classes, **params)  # fmt: skip
    exp = fl.Experiment(model=factory, data=small_graph, rounds=8, clients_per_round=4,
                        local_epochs=3, lr=0.3 if model == "sage" else 0.5)  # fmt: skip
    result = exp.run(client=dask_client, progress=None)
    assert result.final_accuracy > 0.5  # 4 classes: chance is ~0.25
    assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]


def test_baselines_run_on_the_same_split(small_graph):
    factory = fl.models.factory("sage", in_features=16, num_classes=4, hidden=16)
    acc, per_client = graphs.local_only(factory, small_graph.clients, steps=10, lr=0.3)
    assert len(per_client) == 4 and 0.25 < acc <= 1.0


@pytest.mark.parametrize(
    ("registry", "name", "params", "field"),
    [
        (fl.datasets.registry, "sbm_large", {"num_nodes": 1_000_000}, "dataset_params.num_nodes"),
        (fl.datasets.registry, "sbm_large", {"partitioner": "kmeans"},
         "dataset_params.partitioner"),
        (fl.datasets.registry, "sbm_large", {"avg_degree": 500}, "dataset_params.avg_degree"),
        (fl.models.registry, "sage", {"hidden": 4096}, "model_params.hidden"),
        (fl.models.registry, "gat", {"heads": 0}, "model_params.heads"),
        (fl.models.registry, "gat", {"dropout": 0.5}, "model_params.dropout"),
        (graphs.registry, "louvain", {"resolution": -1.0}, "dataset_params.partitioner.resolution"),
    ],
)  # fmt: skip
def test_bounds_refuse_bad_values_naming_the_field(registry, name, params, field):
    with pytest.raises(ParameterError) as info:
        registry.get(name, **params)
    assert info.value.field == field and field in str(info.value)


def test_service_spec_names_the_bad_graph_field():
    from fedhub.errors import InvalidRequest
    from fedhub.services.experiments.spec import model_name, parse_spec

    assert model_name(parse_spec({"dataset": "sbm_large"})) == "sage"
    with pytest.raises(InvalidRequest) as info:
        parse_spec({"dataset": "sbm_large", "model_params": {"hidden": 9999}})
    assert "model_params.hidden" in str(info.value)
    with pytest.raises(InvalidRequest) as info:
        parse_spec({"dataset": "sbm_large", "dataset_params": {"partitioner": "kmeans"}})
    assert "dataset_params.partitioner" in str(info.value)
    with pytest.raises(InvalidRequest, match="200 clients cannot split a graph of 100 nodes"):
        parse_spec({"dataset": "sbm_large", "dataset_params": {"num_nodes": 100},
                    "clients": 200})  # fmt: skip
    assert parse_spec({"dataset": "sbm_large", "clients": 100}).clients == 100  # 20,000 nodes


def test_service_builds_and_runs_an_sbm_large_spec(dask_client):
    from fedhub.services.experiments.build import build_experiment
    from fedhub.services.experiments.spec import parse_spec

    spec = parse_spec({
        "dataset": "sbm_large", "clients": 3, "rounds": 3, "local_epochs": 3, "lr": 0.3,
        "dataset_params": {"num_nodes": 600, "num_communities": 6, "num_classes": 3,
                           "train_fraction": 0.3, "partitioner": "louvain",
                           "neighbour_features": True},
    })  # fmt: skip
    exp = build_experiment(spec)
    assert exp.data.num_features == 64  # 32 features and their missing-neighbour block
    assert isinstance(exp.model(), fl.models.GraphSAGE)
    result = exp.run(client=dask_client, progress=None)
    assert len(result.history) == 3 and result.final_accuracy > 0.4  # 3 classes
