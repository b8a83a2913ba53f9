"""Fixtures for the FL engine tests: one real 2-worker LocalCluster for the session."""

from __future__ import annotations

import pytest

from tests.fl.workers import cluster_kwargs


@pytest.fixture(scope="session")
def dask_client():
    from distributed import Client, LocalCluster

    with LocalCluster(**cluster_kwargs(2)) as cluster, Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="session")
def small_data():
    from fedhub import fl

    return fl.datasets.synthetic(alpha=0.5, beta=0.5, num_clients=12, seed=3)
