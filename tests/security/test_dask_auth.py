"""Route 2: the experiments service's Dask cluster takes no client but the service, and its
workers run as an account that cannot read the hub's files.

Against a real hub (``fedhub up`` with the experiments service, cluster started at service
start): a plain ``tcp://`` client, a ``tls://`` client with credentials of its own and a TLS
handshake without a certificate are all refused, the worker processes run as
``fedhub-worker``, and an experiment submitted through the hub still completes. Against the
service's cluster class itself (:class:`DaskClusters`, as the service makes it): the
service's own client runs tasks, ``client.run(os.getuid)`` shows the worker account, and a
worker cannot open the hub's database.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from distributed import Client
from distributed.comm.core import CommClosedError, FatalCommClosedError
from distributed.security import Security
from traitlets.config import Config

from fedhub import accounts
from fedhub.services.experiments.clusters import ClusterConfigError, DaskClusters
from tests.experiments.conftest import SERVICE, TINY, service_pid
from tests.harness import wait_for

#: The cluster tests start real clusters (and a hub): slow, and as root (the worker account).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the worker account needs root")

WORKER_MODULE = "fedhub.services.experiments.worker"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def dask_hub(hub_factory):
    """A hub whose experiments service starts its cluster when it starts."""
    env = {"FEDHUB_EXPERIMENTS_WORKERS": "2", "FEDHUB_EXPERIMENTS_WARM_UP": "1"}
    hub = hub_factory(env=env)
    hub.scheduler_address = wait_for(
        lambda: _cluster_address(hub.log()), 120, 0.3, "the service's Dask cluster"
    )
    return hub


def _cluster_address(log: str) -> str | None:
    # any cluster the service reports (a plain LocalCluster's tcp:// address included)
    found = re.findall(r"experiments run on an? [\w ]*cluster of \d+ workers at (\S+)", log, re.I)
    return found[-1] if found else None


@pytest.fixture(scope="module")
def service_cluster():
    """The service's cluster class, configured as the service configures it."""
    config = Config()
    config.DaskClusters.n_workers = 2
    clusters = DaskClusters(config=config)
    client = clusters.client("acme", "professional")
    yield clusters, client
    clusters.close()


def worker_uid() -> int:
    return pwd.getpwnam(accounts.WORKER_ACCOUNT).pw_uid


async def _connect(address: str, security: Security | None) -> None:
    async with Client(address, security=security, asynchronous=True, timeout=5):
        pass


# ------------------------------------------------------------------ refused


@pytest.mark.slow
@needs_root
def test_clients_without_the_services_credentials_are_refused(dask_hub):
    address = dask_hub.scheduler_address
    assert address.startswith("tls://127.0.0.1:"), address  # TLS only, loopback only
    hostport = address.removeprefix("tls://")
    host, port = hostport.split(":")

    t0 = time.monotonic()
    # plain TCP: the scheduler speaks only TLS and drops the connection
    with pytest.raises(CommClosedError) as plain:
        asyncio.run(_connect(f"tcp://{hostport}", None))
    assert not isinstance(plain.value, FatalCommClosedError)
    assert "Connection reset" in str(plain.value) or "closed" in str(plain.value)

    # TLS with a certificate of the caller's own making: not signed by the cluster's CA
    with pytest.raises(FatalCommClosedError, match="TLS certificate does not match"):
        asyncio.run(_connect(address, Security.temporary()))

    # TLS without any certificate: the scheduler demands one
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
                tls.recv(16)
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------------ the real service


def _service_workers(hub) -> list[psutil.Process]:
    """The worker entry processes of the hub's experiments service, with their children."""
    found = []
    for proc in psutil.Process(service_pid(hub)).children(recursive=True):
        try:
            if WORKER_MODULE in proc.cmdline():
                found += [proc, *proc.children(recursive=True)]
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
@needs_root
def test_the_services_workers_run_as_the_worker_account_and_experiments_still_run(dask_hub):
    workers = wait_for(
        lambda: len(entries := _service_workers(dask_hub)) >= 4 and entries,
        30,
        what="two worker entries, each with its worker process",
    )
    uid = worker_uid()
    assert uid != 0
    for proc in workers:
        uids = proc.uids()
        assert (uids.real, uids.effective, uids.saved) == (uid, uid, uid), proc.cmdline()
        assert proc.gids().effective != 0
        # the hub's token and database URL stay in the service
        assert not {"JUPYTERHUB_API_TOKEN", "FEDHUB_DB_URL"} & set(proc.environ())
    # scheduler (in the service), Nannies and workers listen on loopback only
    for proc in [psutil.Process(service_pid(dask_hub)), *workers]:
        listening = [c for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert all(c.laddr.ip == "127.0.0.1" for c in listening), (proc.cmdline(), listening)

    # the service's own client still works: an experiment runs to completion
    token = dask_hub.token("alice")
    r = dask_hub.api("POST", f"{SERVICE}/experiments", token, json=TINY)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]

    def finished():
        d = dask_hub.api("GET", f"{SERVICE}/experiments/{exp_id}", token).json()
        return d["status"] in ("completed", "failed", "cancelled") and d

    done = wait_for(finished, 90, 0.3, "the experiment")
    assert done["status"] == "completed", done
    assert len(done["metrics"]) == TINY["rounds"]


# ------------------------------------------------------------------ the cluster class


@pytest.mark.slow
@needs_root
def test_service_client_runs_tasks_as_the_worker_account(service_cluster, dask_hub):
    clusters, client = service_cluster
    assert clusters.local_scheduler_address.startswith("tls://127.0.0.1:")
    assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6

    uid = worker_uid()
    uids = client.run(os.getuid)
    assert len(uids) == 2 and set(uids.values()) == {uid}, uids
    assert all(groups == [] for groups in client.run(os.getgroups).values())  # none extra

    # each worker's scratch dir is its own, private, and not under the hub's state dir
    for home in client.run(lambda: os.environ["HOME"]).values():
        st = os.stat(home)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o700)
        assert not Path(home).resolve().is_relative_to(dask_hub.state_dir.resolve())

    # the hub's database (the real hub's, private to the hub's account) is out of reach
    db_path = str(dask_hub.state_dir / "jupyterhub.sqlite")
    assert os.path.exists(db_path)
    with pytest.raises(PermissionError):
        client.run(lambda: open(db_path, "rb").read(1))


@pytest.mark.slow
@needs_root
def test_no_dashboard_only_the_health_check(service_cluster):
    _, client = service_cluster
    info = client.scheduler_info(n_workers=-1)
    ports = [info["services"]["dashboard"]]
    ports += [w["services"]["dashboard"] for w in info["workers"].values()]
    assert len(ports) == 3
    for port in ports:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/health", timeout=5).status_code == 200
        for page in ("/status", "/info/main/workers.html", "/json/identity.json", "/metrics"):
            assert requests.get(base + page, timeout=5).status_code == 404, (port, page)


def _worker_entries() -> set[int]:
    return {p.pid for p in psutil.Process().children() if WORKER_MODULE in p.cmdline()}


@pytest.mark.slow
@needs_root
def test_closing_the_cluster_leaves_no_worker_process():
    before = _worker_entries()
    config = Config()
    config.DaskClusters.n_workers = 1
    clusters = DaskClusters(config=config)
    client = clusters.client("acme", "professional")
    pids = set(client.run(os.getpid).values())
    entries = _worker_entries() - before
    assert pids and entries
    t0 = time.monotonic()
    clusters.close()
    took = time.monotonic() - t0
    assert took < 2.5, took  # the service's stop deadline
    wait_for(
        lambda: not any(_running(p) for p in pids | entries),
        5,
        what="the worker processes to exit",
    )


# ------------------------------------------------------------------ address mode


def test_address_mode_refuses_a_plain_scheduler_unless_allowed():
    config = Config()
    config.DaskClusters.scheduler_address = "tcp://127.0.0.1:1"
    with pytest.raises(ClusterConfigError, match="not reached over TLS"):
        DaskClusters(config=config).client("acme", "free")


def test_address_mode_reaches_a_tls_scheduler_with_the_operators_files(tmp_path):
    from distributed import LocalCluster

    security = Security.temporary()
    files = {
        "tls_ca_file": accounts.write_private(tmp_path / "ca.pem", security.tls_ca_file),
        "tls_client_cert": accounts.write_private(tmp_path / "cert.pem", security.tls_client_cert),
        "tls_client_key": accounts.write_private(tmp_path / "key.pem", security.tls_client_key),
    }
    with LocalCluster(
        n_workers=1,
        processes=False,
        host="127.0.0.1",
        dashboard_address=":0",
        security=security,
    ) as operators:
        config = Config()
        config.DaskClusters.scheduler_address = operators.scheduler_address
        for name, path in files.items():
            setattr(config.DaskClusters, name, str(path))
        clusters = DaskClusters(config=config)
        try:
            assert clusters.mode == "address"
            client = clusters.client("acme", "free")
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        finally:
            clusters.close()


_KILLED_SERVICE = """
import json, sys
import psutil
from traitlets.config import Config
from fedhub.services.experiments.clusters import DaskClusters

if __name__ == "__main__":
    config = Config()
    config.DaskClusters.n_workers = 1
    client = DaskClusters(config=config).client("acme", "free")
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    print(json.dumps(pids), flush=True)
    sys.stdin.read()  # until the test kills us
"""


@pytest.mark.slow
@needs_root
def test_workers_of_a_killed_service_stop_by_themselves(tmp_path):
    script = tmp_path / "service.py"
    script.write_text(_KILLED_SERVICE)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(proc.stdout.readline())
        assert pids
        proc.kill()  # like SIGKILL of the service: no chance to close anything
        proc.wait()
        wait_for(
            lambda: not any(_running(p) for p in pids), 15, what="the orphaned workers to exit"
        )
    finally:
        proc.kill()
        proc.wait()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Last on purpose: it stops the module's hub.
@pytest.mark.slow
@needs_root
def test_stopping_the_hub_stops_the_services_workers(dask_hub):
    pids = [p.pid for p in _service_workers(dask_hub)]
    assert pids
    dask_hub.stop()
    wait_for(lambda: not any(_running(p) for p in pids), 10, what="the workers to exit")
