"""Partitioners: split a centralised labelled dataset into per-client index sets.

A partitioner is a small object with ``split(labels, num_clients, seed)``; it does not hold
data, so a JSON spec can name it (``fl.partition.get("dirichlet", alpha=0.5)``). Every
split is a pure function of the labels, the number of clients and the seed.
"""

from __future__ import annotations

import numpy as np

from .registry import Param, Registry

registry = Registry("partitioner", field="partition_params")

_ALPHA = Param(float, min=1e-3, max=1e3)
_MIN_SIZE = Param(int, min=0, max=1000)


class Partitioner:
    """Base class: subclasses implement :meth:`split`."""

    name = "base"

    def split(self, labels: np.ndarray, num_clients: int, seed: int = 0) -> list[np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


@registry.register("iid", params={})
class IID(Partitioner):
    """Shuffle, then deal out equal-sized shares."""

    name = "iid"

    def split(self, labels, num_clients, seed=0):
        rng = np.random.default_rng([seed, 1])
        order = rng.permutation(len(labels))
        return [np.sort(part) for part in np.array_split(order, num_clients)]


class _DirichletSkew(Partitioner):
    """Base of the partitioners that draw proportions from Dir(``alpha``) and give every
    client at least ``min_size`` examples."""

    def __init__(self, alpha: float = 0.5, min_size: int = 2) -> None:
        if alpha <= 0:
            raise ValueError("alpha must be positive")
        self.alpha = alpha
        self.min_size = min_size


@registry.register("dirichlet", params={"alpha": _ALPHA, "min_size": _MIN_SIZE})
class Dirichlet(_DirichletSkew):
    """Label skew: each class is spread over clients with proportions ~ Dir(alpha).

    Small ``alpha`` (0.1) gives clients dominated by one or two classes; large ``alpha``
    approaches IID. Resamples until every client holds at least ``min_size`` examples, as
    in Hsu et al. 2019 and the NIID-Bench code.
    """

    name = "dirichlet"

    def split(self, labels, num_clients, seed=0):
        labels = np.asarray(labels)
        rng = np.random.default_rng([seed, 2])
        classes = np.unique(labels)
        for _attempt in range(1000):
            parts: list[list[int]] = [[] for _ in range(num_clients)]
            for c in classes:
                idx = rng.permutation(np.flatnonzero(labels == c))
                props = rng.dirichlet(np.full(num_clients, self.alpha))
                cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
                for k, chunk in enumerate(np.split(idx, cuts)):
                    parts[k].extend(chunk.tolist())
            if min(len(p) for p in parts) >= self.min_size:
                break
        else:
            raise ValueError("could not give every client min_size examples; raise alpha")
        return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


@registry.register("shards", params={"per_client": Param(int, min=1, max=100)})
class Shards(Partitioner):
    """Pathological non-IID (McMahan et al. 2017): sort by label, cut into
    ``num_clients * per_client`` shards and give each client ``per_client`` of them."""

    name = "shards"

    def __init__(self, per_client: int = 2) -> None:
        if per_client < 1:
            raise ValueError("per_client must be at least 1")
        self.per_client = per_client

    def split(self, labels, num_clients, seed=0):
        labels = np.asarray(labels)
        rng = np.random.default_rng([seed, 3])
        order = np.argsort(labels, kind="stable")
        shards = np.array_split(order, num_clients * self.per_client)
        assignment = rng.permutation(len(shards)).reshape(num_clients, self.per_client)
        return [np.sort(np.concatenate([shards[s] for s in row])) for row in assignment]


@registry.register("quantity", params={"alpha": _ALPHA, "min_size": _MIN_SIZE})
class QuantitySkew(_DirichletSkew):
    """Quantity skew: client sizes ~ Dir(alpha) over clients, labels IID within each."""

    name = "quantity"

    def split(self, labels, num_clients, seed=0):
        n = len(labels)
        if n < num_clients * self.min_size:
            raise ValueError("too few examples for min_size per client")
        rng = np.random.default_rng([seed, 4])
        order = rng.permutation(n)
        props = rng.dirichlet(np.full(num_clients, self.alpha))
        spare = n - num_clients * self.min_size
        sizes = self.min_size + np.floor(props * spare).astype(int)
        sizes[np.argmax(props)] += n - sizes.sum()
        cuts = np.cumsum(sizes)[:-1]
        return [np.sort(part) for part in np.split(order, cuts)]


def iid() -> IID:
    return IID()


def dirichlet(alpha: float = 0.5, min_size: int = 2) -> Dirichlet:
    return Dirichlet(alpha=alpha, min_size=min_size)


def shards(per_client: int = 2) -> Shards:
    return Shards(per_client=per_client)


def quantity_skew(alpha: float = 0.5, min_size: int = 2) -> QuantitySkew:
    return QuantitySkew(alpha=alpha, min_size=min_size)


def get(name: str, **params) -> Partitioner:
    """Build a partitioner by name: ``iid``, ``dirichlet``, ``shards``, ``quantity``."""
    return registry.get(name, **params)


def resolve(partition: Partitioner | str | dict | None) -> Partitioner:
    """Accept a partitioner, a name, or a spec ``{"name": ..., **params}``."""
    if partition is None:
        return IID()
    if isinstance(partition, Partitioner):
        return partition
    if isinstance(partition, str):
        return get(partition)
    if isinstance(partition, dict):
        spec = dict(partition)
        return get(spec.pop("name"), **spec)
    raise TypeError(f"cannot use {partition!r} as a partitioner")
