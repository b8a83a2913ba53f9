"""Datasets, partitioners and registries: shapes, determinism, the properties they promise."""

import numpy as np
import pytest

from fedhub import fl


def test_synthetic_matches_the_fedprox_recipe():
    d = fl.datasets.synthetic(alpha=1.0, beta=1.0, num_clients=30, seed=0)
    assert d.num_clients == 30 and d.num_features == 60 and d.num_classes == 10
    sizes = d.sizes()
    # lognormal(4, 2) + 50 total examples, 90 % kept for training
    assert sizes.min() >= int(0.9 * 50)
    total = sizes.sum() + len(d.test["y"])
    assert abs(len(d.test["y"]) / total - 0.1) < 0.02
    assert d.clients[0]["x"].dtype == np.float32 and d.clients[0]["y"].dtype == np.int64
    # heterogeneous label distributions across clients
    dominant = {int(np.bincount(c["y"], minlength=10).argmax()) for c in d.clients}
    assert len(dominant) > 2


def test_synthetic_is_seeded():
    a = fl.datasets.synthetic(1, 1, num_clients=5, seed=1)
    b = fl.datasets.synthetic(1, 1, num_clients=5, seed=1)
    c = fl.datasets.synthetic(1, 1, num_clients=5, seed=2)
    assert all(np.array_equal(x["x"], y["x"]) for x, y in zip(a.clients, b.clients, strict=True))
    assert not np.array_equal(a.clients[0]["x"], c.clients[0]["x"])


@pytest.mark.parametrize(
    "partitioner",
    [
        fl.partition.iid(),
        fl.partition.dirichlet(0.3),
        fl.partition.shards(2),
        fl.partition.quantity_skew(0.5),
    ],
)
def test_partitions_cover_every_example_once(partitioner):
    labels = np.repeat(np.arange(10), 50)
    parts = partitioner.split(labels, 10, seed=0)
    assert len(parts) == 10
    merged = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(merged, np.arange(500))
    again = partitioner.split(labels, 10, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_shards_give_each_client_at_most_two_labels():
    labels = np.repeat(np.arange(10), 100)
    parts = fl.partition.shards(2).split(labels, 10, seed=0)
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_dirichlet_small_alpha_skews_labels_iid_does_not():
    labels = np.repeat(np.arange(10), 200)
    skewed = fl.partition.dirichlet(0.1).split(labels, 10, seed=0)
    iid = fl.partition.iid().split(labels, 10, seed=0)

    def mean_max_share(parts):
        return np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])

    assert mean_max_share(skewed) > 0.4 > 0.2 > mean_max_share(iid)


def test_quantity_skew_varies_sizes():
    parts = fl.partition.quantity_skew(0.3).split(np.zeros(1000, int), 10, seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) > 3 * min(sizes)


def test_digits_and_mnist5k():
    d = fl.datasets.digits(num_clients=5, partition="shards", seed=0)
    assert d.num_features == 64 and d.num_classes == 10
    assert d.sizes().sum() + len(d.test["y"]) == 1797
    m = fl.datasets.mnist5k(num_clients=10, partition={"name": "dirichlet", "alpha": 0.5})
    assert m.num_features == 784 and m.sizes().sum() + len(m.test["y"]) == 5000
    assert m.clients[0]["x"].max() <= 1.0


def test_sbm_graph_dataset():
    d = fl.datasets.sbm(num_clients=3, seed=0)
    assert d.kind == "graph" and d.test is None
    g = d.clients[0]
    assert g["edge_index"].shape[0] == 2 and g["edge_index"].max() < len(g["y"])
    assert (g["train_mask"] ^ g["test_mask"]).all()


def test_registries_build_by_name():
    assert isinstance(fl.strategies.get("fedprox", mu=1.0), fl.strategies.FedProx)
    assert fl.strategies.get("FedProx", mu=1.0).proximal_mu == 1.0
    assert isinstance(fl.partition.get("dirichlet", alpha=0.5), fl.partition.Dirichlet)
    assert fl.datasets.get("synthetic", num_clients=3).num_clients == 3
    model = fl.models.get("logistic_regression", in_features=60, num_classes=10)
    assert model.linear.weight.shape == (10, 60)
    assert fl.models.factory("mlp", in_features=64, hidden=8)().net[0].out_features == 8
    with pytest.raises(KeyError, match="known"):
        fl.strategies.get("fedbogus")
    expected = {
        "fedavg", "fedavgm", "fedprox", "fedadagrad", "fedadam", "fedyogi",
        "scaffold", "fedmedian", "fedtrimmedavg", "krum",
    }  # fmt: skip
    assert expected <= set(fl.strategies.registry.names())
