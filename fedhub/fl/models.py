"""Small reference models; any factory returning a ``torch.nn.Module`` works as well.

Graph models set ``takes_graph = True`` and are called as ``model(x, edge_index)``;
everything else is called as ``model(x)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from .registry import Param, Registry

registry = Registry("model")

# Bounds of the models' parameters (see fedhub.fl.registry). They cap the parameter
# count (mlp: at most 16384 x 1024 + 1024 x 1024 + 1024 x 1000 weights, ~75 MB) so
# that a spec cannot make the shared service or its workers allocate without limit.
_CLASSES = Param(int, min=1, max=1000)


@registry.register(
    "logistic_regression",
    params={"in_features": Param(int, min=1, max=100_000), "num_classes": _CLASSES},
)
class LogisticRegression(nn.Module):
    """Multinomial logistic regression: the model of the FedProx Synthetic experiments."""

    def __init__(self, in_features: int = 60, num_classes: int = 10) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@registry.register(
    "mlp",
    params={
        "in_features": Param(int, min=1, max=16_384),
        "num_classes": _CLASSES,
        "hidden": Param(int, min=1, max=1024),
    },
)
class MLP(nn.Module):
    """Two hidden layers with ReLU: McMahan et al.'s "2NN" when hidden=200."""

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 200) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@registry.register(
    "cnn",
    params={
        "side": Param(int, min=4, max=64),
        "num_classes": _CLASSES,
        "channels": Param(int, min=1, max=64),
    },
)
class CNN(nn.Module):
    """A small CNN for square grey images given as flat vectors (8x8 digits, 28x28 MNIST)."""

    def __init__(self, side: int = 28, num_classes: int = 10, channels: int = 16) -> None:
        super().__init__()
        self.side = side
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * channels * (side // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.view(-1, 1, self.side, self.side))
        return self.head(h.flatten(1))


@registry.register(
    "gcn",
    params={
        "in_features": Param(int, min=1, max=4096),
        "num_classes": _CLASSES,
        "hidden": Param(int, min=1, max=512),
    },
)
class GCN(nn.Module):
    """Two-layer GCN (Kipf & Welling 2017) for node classification with torch-geometric."""

    takes_graph = True

    def __init__(self, in_features: int = 16, num_classes: int = 4, hidden: int = 32) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_features, hidden)
        self.conv2 = GCNConv(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        return self.conv2(h, edge_index)


_GRAPH_IN = Param(int, min=1, max=4096)


@registry.register(
    "sage",
    params={
        "in_features": _GRAPH_IN,
        "num_classes": _CLASSES,
        "hidden": Param(int, min=1, max=512),
    },
)
class GraphSAGE(nn.Module):
    """Two-layer GraphSAGE (Hamilton et al. 2017), mean aggregation, full-batch.

    No neighbour sampling: torch-geometric's ``NeighborLoader`` needs ``pyg-lib`` or
    ``torch-sparse``, which have no wheels for this torch; a client's subgraph (a few
    thousand nodes) fits one full-batch step.
    """

    takes_graph = True

    def __init__(self, in_features: int = 16, num_classes: int = 4, hidden: int = 64) -> None:
        super().__init__()
        from torch_geometric.nn import SAGEConv

        self.conv1 = SAGEConv(in_features, hidden)
        self.conv2 = SAGEConv(hidden, num_classes)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x, edge_index))
        return self.conv2(h, edge_index)


@registry.register(
    "gat",
    params={
        "in_features": _GRAPH_IN,
        "num_classes": _CLASSES,
        "hidden": Param(int, min=1, max=256),
        "heads": Param(int, min=1, max=16),
    },
)
class GAT(nn.Module):
    """Two-layer GAT (Velickovic et al. 2018): ``heads`` attention heads of ``hidden``
    channels, concatenated, then one head to the classes."""

    takes_graph = True

    def __init__(
        self, in_features: int = 16, num_classes: int = 4, hidden: int = 16, heads: int = 4
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(in_features, hidden, heads=heads)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.elu(self.conv1(x, edge_index))
        return self.conv2(h, edge_index)


def get(name: str, **params) -> nn.Module:
    """Build a model by name: ``logistic_regression``, ``mlp``, ``cnn``, ``gcn``, ``sage``, ``gat``."""
    return registry.get(name, **params)


def factory(name: str, **params) -> Callable[[], nn.Module]:
    """A picklable zero-argument factory, for ``Experiment(model=...)`` built from a spec."""
    registry.get(name, **params)  # fail early on a bad name or parameter
    return functools.partial(get, name, **params)
