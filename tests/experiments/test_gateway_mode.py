"""The experiments service in ``gateway`` mode on a real hub and a real dask-gateway-server.

Two tenants' experiments complete, each on a cluster of its own that the service made on
the gateway (real schedulers and workers started by the gateway's local backend, reached
over the gateway's TLS proxy); a fresh ``TenantGatewayClusters`` (what a restarted service
builds) reconnects to a tenant's running cluster instead of making another; a cluster
with a run in progress outlives the idle timeout, idle clusters stop; a gateway that refuses the credentials or is down gives a message naming the cause.

The gateway here is a minimal stand-in for fedhub's own (``fedhub.gateway``): JupyterHub
authentication against the test hub, the local backend on loopback, and the cluster
options the service asks for (tenant, worker cores and memory, idle timeout).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import DEMO_PASSWORD
from tests.experiments.conftest import SERVICE, ExperimentsAPI, service_pid
from tests.harness import HubProcess, free_port, wait_for

pytestmark = pytest.mark.slow

dask_gateway = pytest.importorskip("dask_gateway")  # the gateway extra (make installs it)

#: Seconds of no task after which a cluster stops itself (asked for by the service).
IDLE_TIMEOUT = 8

GATEWAY_CONFIG = """
import sys
from dask_gateway_server.backends.local import UnsafeLocalBackend
from dask_gateway_server.options import Float, Integer, Options, String


class LoopbackBackend(UnsafeLocalBackend):
    # schedulers and workers listen on loopback only (the default is every interface)
    default_host = "127.0.0.1"


def _options(options, user):
    return {{
        "worker_cores": options.worker_cores,
        "worker_threads": 1,
        "worker_memory": int(options.worker_memory * 2**30),
        "idle_timeout": options.idle_timeout,
    }}


c.DaskGateway.backend_class = LoopbackBackend
c.DaskGateway.address = "127.0.0.1:0"
c.Proxy.address = "127.0.0.1:{port}"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = "{hub_url}/hub/api"
c.JupyterHubAuthenticator.jupyterhub_api_token = "not-used-by-token-checks"
c.JupyterHubAuthenticator.use_service_access_scopes = False
c.LocalBackend.clusters_directory = "{clusters}"
c.ClusterConfig.scheduler_cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
c.ClusterConfig.worker_cmd = [sys.executable, "-m", "distributed.cli.dask_worker"]
c.Backend.cluster_options = Options(
    String("tenant", ""),
    Integer("worker_cores", 1, min=1, max=16),
    Float("worker_memory", 1, min=0.25, max=64),
    Float("idle_timeout", 600, min=0, max=3600),
    handler=_options,
)
"""

FEDHUB_CONFIG = """
c.DaskClusters.mode = "gateway"
c.DaskClusters.gateway_address = "{gateway_url}"
c.DaskClusters.gateway_workers_per_tier = {{"free": 1, "starter": 1, "professional": 1}}
c.DaskClusters.gateway_idle_timeout = {idle}
c.DaskClusters.gateway_keepalive_interval = 1
c.DaskClusters.gateway_start_timeout = 60
c.ExperimentScheduler.max_running = 4
c.ExperimentScheduler.max_running_per_tenant = 1
"""

#: Smaller than the service tests' TINY: one worker per cluster here.
SMALL = {"dataset": "synthetic", "clients": 4, "clients_per_round": 2, "rounds": 3, "seed": 1}


class GatewayProcess:
    """``dask-gateway-server -f config`` in its own session, on a free loopback port."""

    def __init__(self, hub_url: str, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.config = workdir / "dask_gateway_config.py"
        self.config.write_text(
            GATEWAY_CONFIG.format(port=self.port, hub_url=hub_url, clusters=workdir / "clusters")
        )
        self.log_path = workdir / "gateway.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        server = Path(sys.executable).with_name("dask-gateway-server")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(server), "-f", str(self.config)],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._healthy, 30, 0.2, "dask-gateway-server")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dask-gateway-server exited; see {self.log_path}")
        try:
            return requests.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM (the gateway stops its clusters), then the whole session if need be."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture(scope="module")
def stack(hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    hub = HubProcess(state, password=DEMO_PASSWORD)  # its port is chosen now; the gateway needs it
    gateway = GatewayProcess(hub.url, Path(tempfile.mkdtemp(prefix="gateway-")))
    hub.fedhub_config = FEDHUB_CONFIG.format(gateway_url=gateway.url, idle=IDLE_TIMEOUT)
    try:
        gateway.start()
        hub.start()
        token = hub.token("alice")
        wait_for(
            lambda: hub.api("GET", f"{SERVICE}/quota", token).status_code == 200,
            120,
            0.3,
            "the experiments service",
        )
        yield hub, gateway
    finally:
        hub.stop()
        gateway.stop()
        shutil.rmtree(gateway.workdir, ignore_errors=True)


def service_gateway(hub, gateway):
    """A ``Gateway`` client as the experiments service's gateway user (its own token).

    Not closed explicitly: its finaliser closes it when the test returns, and fails after
    an explicit ``close()``."""
    from dask_gateway import Gateway
    from dask_gateway.auth import JupyterHubAuth

    token = psutil.Process(service_pid(hub)).environ()["JUPYTERHUB_API_TOKEN"]
    return Gateway(gateway.url, auth=JupyterHubAuth(api_token=token)), token


def run_tokens(gw, name: str) -> set[str]:
    """The runs (``fedhub.fl`` payload tokens) whose tasks the cluster's scheduler saw."""
    from distributed import Client

    report = gw.get_cluster(name)  # with the cluster's TLS credentials
    with Client(report.scheduler_address, security=report.security, set_as_default=False) as c:
        keys = c.run_on_scheduler(
            lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log]
        )
    return {m.group(1) for k in keys if (m := re.match(r"fl-(?:actor|train)-([0-9a-f]{32})", k))}


def test_each_tenant_completes_on_its_own_cluster(stack):
    hub, gateway = stack
    alice, bob = ExperimentsAPI(hub, "alice"), ExperimentsAPI(hub, "bob")  # acme, globex
    submitted = {}
    for api in (alice, bob):
        r = api.submit(**SMALL)
        assert r.status_code == 201, r.text
        submitted[api.user] = r.json()
    # each run's cluster is looked at as soon as the run ends, before its idle timeout
    registry = hub.state_dir / "experiments" / "gateway-clusters.json"
    gw, _ = service_gateway(hub, gateway)
    reports, runs = {}, {}
    for tenant, api in (("acme", alice), ("globex", bob)):
        done = api.wait_done(submitted[api.user]["id"], 90)
        assert done["status"] == "completed", done["error"]
        assert [m["round"] for m in done["metrics"]] == [1, 2, 3]
        name = json.loads(registry.read_text())[tenant]
        reports[tenant] = gw.get_cluster(name)  # the service's gateway user owns it
        runs[tenant] = run_tokens(gw, name)

    # the service made one cluster per tenant and remembers which is whose
    names = json.loads(registry.read_text())
    assert set(names) == {"acme", "globex"} and names["acme"] != names["globex"]
    assert registry.stat().st_mode & 0o777 == 0o600
    log = hub.log()
    assert f"tenant acme: new gateway cluster {names['acme']}" in log
    assert f"tenant globex: new gateway cluster {names['globex']}" in log
    # tagged with the tenant, workers sized by its tier (tiers.yaml's gateway keys)
    options = {t: r.options for t, r in reports.items()}
    assert {t: o["tenant"] for t, o in options.items()} == {"acme": "acme", "globex": "globex"}
    sizes = {t: (o["worker_cores"], o["worker_memory"]) for t, o in options.items()}
    assert sizes == {"acme": (2, 4.0), "globex": (1, 2.0)}  # professional, starter
    assert {o["idle_timeout"] for o in options.values()} == {IDLE_TIMEOUT}
    # each cluster's scheduler ran the tasks of exactly one run, and not the same run
    assert len(runs["acme"]) == 1 and len(runs["globex"]) == 1 and runs["acme"] != runs["globex"]


def test_a_restarted_service_reconnects_and_idle_clusters_stop(stack):
    """What a restarted service builds finds acme's running cluster instead of starting
    another; while acme has a run in progress the keepalive keeps its cluster past the
    idle timeout; idle clusters stop by themselves."""
    import time

    from dask_gateway.auth import JupyterHubAuth

    from fedhub.services.experiments.gateway_clusters import ClusterSize, TenantGatewayClusters

    hub, gateway = stack
    registry = hub.state_dir / "experiments" / "gateway-clusters.json"
    names = json.loads(registry.read_text())
    gw, token = service_gateway(hub, gateway)
    running = threading.Event()
    fresh = TenantGatewayClusters(
        address=gateway.url,
        auth=JupyterHubAuth(api_token=token),
        size_of=lambda tenant, tier: ClusterSize(workers=1),
        busy=lambda tenant: running.is_set(),  # the service asks its database
        registry=registry,
        idle_timeout=IDLE_TIMEOUT,
        start_timeout=30,
        keepalive_interval=1,
        log=logging.getLogger("test"),
    )
    try:
        client = fresh.client("acme", "professional")
        assert fresh.cluster_name("acme") == names["acme"]
        assert len(gw.list_clusters()) == 2  # no third cluster
        assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
        since = time.monotonic()  # acme's last task
        running.set()  # acme has a run in progress
        # globex's cluster, idle, stops; acme's is kept past its idle timeout
        wait_for(
            lambda: [r.name for r in gw.list_clusters()] == [names["acme"]],
            IDLE_TIMEOUT * 3,
            0.5,
            "globex's idle cluster to stop",
        )
        time.sleep(max(0.0, since + IDLE_TIMEOUT * 1.5 - time.monotonic()))  # a span to outlast
        assert [r.name for r in gw.list_clusters()] == [names["acme"]]
        running.clear()
        wait_for(lambda: not gw.list_clusters(), IDLE_TIMEOUT * 3, 0.5, "idle acme to stop")
    finally:
        fresh.close()


def test_refused_credentials_name_the_cause(stack):
    from dask_gateway.auth import JupyterHubAuth

    from fedhub.services.experiments.gateway_clusters import (
        ClusterSize,
        GatewayRefused,
        TenantGatewayClusters,
    )

    _, gateway = stack
    stranger = TenantGatewayClusters(
        address=gateway.url,
        auth=JupyterHubAuth(api_token="not-a-hub-token"),
        size_of=lambda tenant, tier: ClusterSize(workers=1),
        busy=lambda tenant: False,
        registry=None,
        idle_timeout=0,
        start_timeout=10,
        keepalive_interval=0,
        log=logging.getLogger("test"),
    )
    try:
        with pytest.raises(GatewayRefused) as e:
            stranger.client("acme", "professional")
    finally:
        stranger.close()
    # the hub does not know the token; the gateway says so (HTTP 500 from the gateway)
    message = str(e.value)
    assert message.startswith("the Dask Gateway refused"), message
    assert "JupyterHub API token" in message and "not-a-hub-token" not in message


def test_gateway_down_fails_the_run_with_the_cause(stack):
    hub, gateway = stack
    gateway.stop()
    carol = ExperimentsAPI(hub, "carol")  # initech: no cluster yet
    r = carol.submit(**SMALL)
    assert r.status_code == 201, r.text
    done = carol.wait_done(r.json()["id"], 60)
    assert done["status"] == "failed", done
    assert "cannot be reached" in done["error"] and gateway.url in done["error"], done["error"]
    assert "Traceback" not in done["error"]
