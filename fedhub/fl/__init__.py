"""fedhub.fl: federated learning on Dask.

    from fedhub import fl
    data = fl.datasets.synthetic(alpha=1.0, beta=1.0, num_clients=30, seed=0)
    exp = fl.Experiment(model=lambda: fl.models.LogisticRegression(60, 10), data=data,
                        strategy=fl.strategies.FedProx(mu=1.0), rounds=20)
    result = exp.run()

Self-contained: ``fedhub/__init__.py`` imports this package lazily, so the hub and the
services never pay for torch or Dask. See docs/fl.md.
"""

# first: without the fl extra, one line naming it instead of a traceback
import fedhub.fl._requirements  # noqa: F401

from . import aggregate, checkpoint, datasets, graphs, models, partition, strategies
from .datasets import FederatedData
from .experiment import Cancelled, Experiment, Result, Stragglers
from .strategies import Strategy
from .training import ClientJob, ClientResult

__all__ = [
    "Cancelled",
    "ClientJob",
    "ClientResult",
    "Experiment",
    "FederatedData",
    "Result",
    "Strategy",
    "Stragglers",
    "aggregate",
    "checkpoint",
    "datasets",
    "graphs",
    "models",
    "partition",
    "strategies",
]
