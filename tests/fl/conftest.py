"""Fixtures for the FL engine tests: one real 2-worker LocalCluster for the session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dask_client():
    from distributed import Client, LocalCluster

    kwargs = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
              "host": "127.0.0.1", "dashboard_address": ":0", "memory_limit": "2GiB"}  # fmt: skip
    with LocalCluster(**kwargs) as cluster, Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture(scope="session")
def small_data():
    from fedhub import fl

    return fl.datasets.synthetic(alpha=0.5, beta=0.5, num_clients=12, seed=3)
