"""Tenant workers on real private clusters: which account runs them and what it can read.

Runs as root (the service's real configuration under ``fedhub up``): each tenant's workers
run as ``tenant_account(slug)``, the shared workers as the worker account.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from fedhub import accounts
from fedhub.datasets import DatasetStore, Schema, load_arrays
from fedhub.services.experiments.clusters import ClusterConfigError, DaskClusters
from fedhub.services.experiments.tenant_workers import TenantWorkerPool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not accounts.can_isolate(), reason="tenant accounts need root"),
]

# the workers cannot import tests/: this module's functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def by_value(fn):
    """``fn`` wrapped so that Dask pickles the task with cloudpickle (plain pickle refuses a
    lambda), which sends this module's functions by value."""
    return lambda *args: fn(*args)


SCHEMA = Schema([{"name": "a", "dtype": "float32"}], {"name": "y", "num_classes": 2})


def arrays(rows: int = 20) -> dict:
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(rows, 1)).astype(np.float32),
        "y": np.arange(rows, dtype=np.int64) % 2,
        "split": (np.arange(rows) % 4 == 0).astype(np.uint8),
    }


def probe(version_dir: str, other_dir: str) -> dict:
    """What the worker that runs this is, and what it can read."""
    out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups()}
    out["rows"] = len(load_arrays(version_dir)["y"])
    try:
        open(Path(other_dir) / "arrays.npz", "rb").close()
        out["other"] = "read"
    except PermissionError:
        out["other"] = "PermissionError"
    return out


def try_read(path: str) -> str:
    try:
        open(path, "rb").close()
        return "read"
    except PermissionError:
        return "PermissionError"


@pytest.fixture(scope="module")
def store():
    # a root the tenants' accounts can traverse (pytest's tmp_path is root's, 0700)
    root = Path(tempfile.mkdtemp(prefix="fedhub-tenant-data-", dir="/tmp"))
    root.chmod(0o711)
    store = DatasetStore(root / "tenant-data")
    for slug in ("acme", "globex"):
        store.write(slug, "sales", arrays(), SCHEMA)
    yield store
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clusters():
    clusters = DaskClusters(
        mode="local",
        n_workers=1,
        tenant_workers=1,
        tenant_worker_idle_timeout=0,
        worker_preload="",  # torch is not needed here
    )
    clusters.tenant_busy = lambda slug: False  # no database in this test
    yield clusters
    clusters.close()


def test_tenant_workers_run_as_the_tenant_and_read_only_its_own_data(store, clusters):
    acme_dir = str(store.version_dir("acme", "sales"))
    globex_dir = str(store.version_dir("globex", "sales"))
    acme = clusters.tenant_executor("acme", "free")
    acme_uid = accounts.lookup(accounts.tenant_account("acme")).pw_uid
    assert acme.account == accounts.tenant_account("acme")

    result = acme.submit(by_value(probe), acme_dir, globex_dir).result(timeout=60)
    assert result["uid"] == result["euid"] == acme_uid
    assert result["groups"] in ([], [accounts.lookup(acme.account).pw_gid])
    assert result["rows"] == 20
    assert result["other"] == "PermissionError"

    # the worker processes themselves, as the kernel sees them
    pids = acme.worker_pids()
    assert pids
    for pid in pids:
        assert os.stat(f"/proc/{pid}").st_uid == acme_uid

    # globex's executor is a different account on different workers
    globex = clusters.tenant_executor("globex", "free")
    assert set(globex.workers).isdisjoint(acme.workers)
    other = globex.submit(by_value(probe), globex_dir, acme_dir).result(timeout=60)
    assert other["uid"] == accounts.lookup(accounts.tenant_account("globex")).pw_uid
    assert other["other"] == "PermissionError"

    # a later wave pinned to the worker that trained: one of the tenant's own, never another's
    pinned = acme.submit(os.getuid, workers=acme.workers[:1]).result(timeout=60)
    assert pinned == acme_uid
    with pytest.raises(RuntimeError, match="are not workers of tenant acme"):
        acme.submit(os.getuid, workers=globex.workers[:1])


def test_shared_workers_cannot_read_a_tenants_data_nor_see_its_workers(store, clusters):
    acme = clusters.tenant_executor("acme", "free")
    shared = clusters.client("acme", "free")
    shared_workers = set(shared.scheduler_info(n_workers=-1)["workers"])
    assert shared_workers and shared_workers.isdisjoint(acme.workers)
    path = str(store.version_dir("acme", "sales") / "arrays.npz")
    assert (
        shared.submit(by_value(try_read), path, pure=False).result(timeout=60) == "PermissionError"
    )
    assert shared.submit(os.getuid, pure=False).result(timeout=60) == (
        accounts.lookup(clusters.worker_account).pw_uid
    )


def test_address_mode_refuses_tenant_executors():
    clusters = DaskClusters(mode="address", scheduler_address="tls://127.0.0.1:1")
    with pytest.raises(ClusterConfigError, match="need mode local or gateway"):
        clusters.tenant_executor("acme", "free")


def test_idle_tenant_workers_retire_and_come_back(clusters):
    pool = TenantWorkerPool(clusters._start_tenant_cluster, idle_timeout=1.0)
    try:
        executor = pool.executor("initech")
        with executor.lease():
            assert (
                executor.submit(os.getuid).result(timeout=60)
                == accounts.lookup(accounts.tenant_account("initech")).pw_uid
            )
            time.sleep(1.5)  # longer than the idle timeout, but a lease is held
            assert pool.idle_tenants() == []
        pids = executor.worker_pids()
        deadline = time.monotonic() + 20
        while pool.tenants() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pool.tenants() == []
        # the processes are gone, not just forgotten
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids)
        again = pool.executor("initech")
        assert (
            again.submit(os.getuid).result(timeout=60)
            == accounts.lookup(accounts.tenant_account("initech")).pw_uid
        )
    finally:
        pool.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
