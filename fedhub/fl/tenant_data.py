"""A tenant's private dataset as an experiment's data, read only on the tenant's workers.

:class:`TenantData` stands where a :class:`~fedhub.fl.datasets.FederatedData` does, but
holds no arrays where it is made (the experiments service): only the path of a dataset
version (:mod:`fedhub.datasets`), the partition and the seed. The arrays are read with
:func:`fedhub.datasets.load_arrays` (checksum checked) the first time a Dask worker touches
``clients`` or ``test``, split over the clients with the usual partitioners
(:mod:`fedhub.fl.partition`), and cached per worker. Anywhere else (no Dask worker in the
process, as in the service) touching them raises :class:`DataNotHere`: the service cannot
read a tenant's data by mistake, and cannot anyway, being root only to write it.

What leaves the worker: the model updates, per-client example counts (for scheduling) and
the test loss and accuracy (:func:`evaluate_on_worker`), never rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from . import partition as _partition

__all__ = ["DataNotHere", "TenantData", "evaluate_on_worker", "client_sizes"]

_CACHE: OrderedDict[tuple, tuple[list[dict], dict]] = OrderedDict()
_CACHE_SIZE = 2
_LOCK = threading.Lock()


class DataNotHere(RuntimeError):
    """A tenant's rows were asked for outside a Dask worker."""


def _on_a_worker() -> bool:
    """True inside a task a Dask worker runs (not merely in a process that once had a
    worker: a closed in-process worker can linger in ``Worker._instances``)."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - fedhub[fl] has distributed
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


class TenantData:
    """A tenant dataset version, partitioned over ``num_clients`` clients.

    ``sizes`` (examples per client) is filled in by the service from a worker
    (:func:`client_sizes`) before a run; it is needed to balance work, not to train.
    """

    kind = "tabular"

    def __init__(
        self,
        version_dir: str,
        *,
        ref: str,
        num_clients: int,
        num_features: int,
        num_classes: int,
        partition: _partition.Partitioner | str | dict | None = None,
        seed: int = 0,
        sizes: list[int] | None = None,
    ) -> None:
        self.version_dir = str(version_dir)
        self.name = ref
        self.num_clients = int(num_clients)
        self.num_features = int(num_features)
        self.num_classes = int(num_classes)
        self.partition = partition
        self.seed = int(seed)
        self.params = {"num_clients": num_clients, "partition": repr(partition), "seed": seed}
        self._sizes = list(sizes) if sizes is not None else None

    # -- what the driver may know ----------------------------------------------------------
    def sizes(self) -> np.ndarray:
        if self._sizes is None:
            raise DataNotHere("the client sizes are not known yet: call client_sizes on a worker")
        return np.asarray(self._sizes)

    def num_examples(self, cid: int) -> int:
        return int(self.sizes()[cid])

    def with_sizes(self, sizes: list[int]) -> TenantData:
        self._sizes = [int(s) for s in sizes]
        return self

    # -- what only a worker may read -------------------------------------------------------
    @property
    def clients(self) -> list[dict[str, np.ndarray]]:
        return self._load()[0]

    @property
    def test(self) -> dict[str, np.ndarray]:
        return self._load()[1]

    def _key(self) -> tuple:
        return (self.version_dir, self.num_clients, repr(self.partition), self.seed)

    # the rows live in the worker's module-level cache, never in the object: pickling it
    # (to a worker, into a checkpoint) carries the path and the split only
    def _load(self) -> tuple[list[dict], dict]:
        if not _on_a_worker():
            raise DataNotHere(
                f"{self.name} is read only on the tenant's own workers, not in this process"
            )
        key = self._key()
        with _LOCK:
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit
        from fedhub.datasets import load_arrays

        arrays = load_arrays(self.version_dir)
        train = arrays["split"] == 0
        x, y = arrays["x"][train], arrays["y"][train]
        parts = _partition.resolve(self.partition).split(y, self.num_clients, self.seed)
        clients = [{"x": x[p], "y": y[p]} for p in parts]
        test = {"x": arrays["x"][~train], "y": arrays["y"][~train]}
        with _LOCK:
            _CACHE[key] = (clients, test)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return clients, test

    def __repr__(self) -> str:
        return (
            f"TenantData({self.name!r}, clients={self.num_clients}, "
            f"features={self.num_features}, classes={self.num_classes})"
        )


def client_sizes(data: TenantData) -> list[int]:
    """Worker task: examples per client (counts only leave the worker)."""
    return [len(c["y"]) for c in data.clients]


def sized(
    executor, folder: str, *, ref: str, schema, partition, num_clients: int, seed: int
) -> TenantData:
    """The :class:`TenantData` of the arrays in ``folder`` (their ``schema``: features and
    classes), its clients' sizes counted on ``executor``, the tenant's own workers: the only
    place its rows are read."""
    data = TenantData(
        str(folder),
        ref=ref,
        num_clients=num_clients,
        num_features=schema.num_features,
        num_classes=schema.num_classes,
        partition=partition,
        seed=seed,
    )
    return data.with_sizes(executor.submit(client_sizes, data).result(timeout=300))


def evaluate_on_worker(data: TenantData, model_factory, params: np.ndarray) -> tuple[float, float]:
    """Worker task: loss and accuracy of ``params`` on the tenant's own test split."""
    from .training import FlatModel, evaluate

    fm = FlatModel(model_factory())
    fm.set(np.asarray(params, dtype=np.float32))
    return evaluate(fm, data.test, data.kind)
