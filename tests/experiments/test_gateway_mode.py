"""The experiments service in ``gateway`` mode on a real hub running fedhub's Dask Gateway.

``fedhub up`` with ``c.GatewaySettings.enabled`` runs the real dask-gateway-server 2026.3.0
(``fedhub.gateway``: JupyterHub authentication, ``FedhubBackend`` starting real schedulers
and workers as Unix accounts, reached over the gateway's TLS proxy). Two tenants'
experiments complete, each on a cluster of its own, tagged with the tenant, sized by its
tier and run as that tenant's account; no tenant member sees these clusters; a fresh
``TenantGatewayClusters`` (what a restarted service builds) reconnects to a tenant's
running cluster instead of making another; a cluster with a run in progress outlives the
idle timeout while idle ones stop; a refusal by the gateway fails the run with the
gateway's reason, and an unreachable gateway or a token it does not accept name the cause.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from fedhub import accounts
from tests.conftest import DEMO_PASSWORD
from tests.experiments.conftest import (
    ExperimentsAPI,
    service_pid,
    wait_for_experiments_service,
)
from tests.harness import HubProcess, free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not accounts.can_isolate(), reason="clusters switch accounts: needs root"),
]

dask_gateway = pytest.importorskip("dask_gateway")  # the gateway extra (make installs it)

#: Seconds of no task after which a cluster stops itself (asked for by the service).
IDLE_TIMEOUT = 8

FEDHUB_CONFIG = """
c.GatewaySettings.enabled = True
# the gateway's scheduler proxy on a port known here, to tell the service
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskClusters.mode = "gateway"
c.DaskClusters.gateway_address = "{hub_url}/services/dask-gateway"
c.DaskClusters.gateway_proxy_address = "gateway://127.0.0.1:{tcp}"
c.DaskClusters.gateway_workers_per_tier = {{"free": 1, "starter": 1, "professional": 1}}
c.DaskClusters.gateway_idle_timeout = {idle}
c.DaskClusters.gateway_keepalive_interval = 1
c.DaskClusters.gateway_start_timeout = 90
c.ExperimentScheduler.max_running = 4
c.ExperimentScheduler.max_running_per_tenant = 1
"""

#: Smaller than the service tests' TINY: one worker per cluster here.
SMALL = {"dataset": "synthetic", "clients": 4, "clients_per_round": 2, "rounds": 3, "seed": 1}


@pytest.fixture(scope="module")
def stack(hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    hub = HubProcess(state, password=DEMO_PASSWORD)  # its URL is known before it starts
    tcp = free_port()
    hub.fedhub_config = FEDHUB_CONFIG.format(hub_url=hub.url, tcp=tcp, idle=IDLE_TIMEOUT)
    where = {"address": f"{hub.url}/services/dask-gateway", "proxy_address": f"127.0.0.1:{tcp}"}
    hub.start()
    try:
        wait_for_experiments_service(hub)
        yield hub, where
    finally:
        hub.stop()


def gateway_as(where: dict, token: str):
    """A ``Gateway`` client with ``token`` (not closed explicitly: its finaliser closes it
    when the test returns, and fails after an explicit ``close()``)."""
    from dask_gateway import Gateway
    from dask_gateway.auth import JupyterHubAuth

    return Gateway(where["address"], proxy_address=where["proxy_address"],
                   auth=JupyterHubAuth(api_token=token))  # fmt: skip


def service_gateway(hub, where):
    """A ``Gateway`` client as the experiments service's gateway user (its own token)."""
    token = psutil.Process(service_pid(hub)).environ()["JUPYTERHUB_API_TOKEN"]
    return gateway_as(where, token), token


def cluster_accounts(name: str) -> set[str]:
    """The Unix accounts running cluster ``name``'s scheduler and workers."""
    found = set()
    for p in psutil.process_iter(["username", "cmdline"]):
        if "distributed.cli" not in " ".join(p.info["cmdline"] or []):
            continue
        try:
            if p.environ().get("DASK_GATEWAY_CLUSTER_NAME") == name:
                found.add(p.info["username"])
        except psutil.Error:
            continue
    return found


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
    hub, where = stack
    alice, bob = ExperimentsAPI(hub, "alice"), ExperimentsAPI(hub, "bob")  # acme, globex
    submitted = {}
    for api in (alice, bob):
        r = api.submit(**SMALL)
        assert r.status_code == 201, r.text
        submitted[api.user] = r.json()
    # each run's cluster is looked at as soon as the run ends, before its idle timeout
    registry = hub.state_dir / "experiments" / "gateway-clusters.json"
    gw, _ = service_gateway(hub, where)
    reports, runs, owners = {}, {}, {}
    for tenant, api in (("acme", alice), ("globex", bob)):
        done = api.wait_done(submitted[api.user]["id"], 120)
        assert done["status"] == "completed", done["error"]
        assert [m["round"] for m in done["metrics"]] == [1, 2, 3]
        name = json.loads(registry.read_text())[tenant]
        reports[tenant] = gw.get_cluster(name)  # the service's gateway user owns it
        runs[tenant] = run_tokens(gw, name)
        owners[tenant] = cluster_accounts(name)

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
    # scheduler and workers run as the tenant's own account, never a user's or the hub's
    tenant_account = accounts.ACCOUNT_PREFIX[:-1] + "_t_"  # fedhub_t_<tenant>
    assert owners == {"acme": {tenant_account + "acme"}, "globex": {tenant_account + "globex"}}
    # the tenants' members do not see them, even the cluster of their own tenant
    for user in ("alice", "bob"):
        assert gateway_as(where, hub.token(user)).list_clusters() == []


def test_a_restarted_service_reconnects_and_idle_clusters_stop(stack):
    """What a restarted service builds finds acme's running cluster instead of starting
    another; while acme has a run in progress the keepalive keeps its cluster past the
    idle timeout; idle clusters stop by themselves."""
    from dask_gateway.auth import JupyterHubAuth

    from fedhub.services.experiments.gateway_clusters import ClusterSize, TenantGatewayClusters

    hub, where = stack
    registry = hub.state_dir / "experiments" / "gateway-clusters.json"
    names = json.loads(registry.read_text())
    gw, token = service_gateway(hub, where)
    running = threading.Event()
    fresh = TenantGatewayClusters(
        address=where["address"],
        proxy_address=f"gateway://{where['proxy_address']}",
        auth=JupyterHubAuth(api_token=token),
        size_of=lambda tenant, tier: ClusterSize(workers=1),
        busy=lambda tenant: running.is_set(),  # the service asks its database
        registry=registry,
        idle_timeout=IDLE_TIMEOUT,
        start_timeout=60,
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


def test_a_refusal_by_the_gateway_fails_the_run_with_its_reason(stack):
    hub, where = stack
    hub.fedhub("tenant", "update", "initech", "--override", "gateway_max_workers=0")
    carol = ExperimentsAPI(hub, "carol")  # initech
    r = carol.submit(**SMALL)
    assert r.status_code == 201, r.text
    done = carol.wait_done(r.json()["id"], 90)
    assert done["status"] == "failed", done
    error = done["error"]
    assert error.startswith("GatewayRefused: the Dask Gateway refused"), error
    assert "gateway_max_workers" in error and "Traceback" not in error, error
    gw, _ = service_gateway(hub, where)
    wait_for(lambda: not gw.list_clusters(), 30, 0.5, "the refused cluster to be stopped")


def test_an_unreachable_gateway_or_a_refused_token_name_the_cause(stack):
    from dask_gateway.auth import JupyterHubAuth

    from fedhub.services.experiments.gateway_clusters import (
        ClusterSize,
        GatewayRefused,
        GatewayUnreachable,
        TenantGatewayClusters,
    )

    _, where = stack

    def clusters(address: str, token: str) -> TenantGatewayClusters:
        return TenantGatewayClusters(
            address=address,
            auth=JupyterHubAuth(api_token=token),
            size_of=lambda tenant, tier: ClusterSize(workers=1),
            busy=lambda tenant: False,
            registry=None,
            idle_timeout=0,
            start_timeout=10,
            keepalive_interval=0,
            log=logging.getLogger("test"),
        )

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for address, token, error in (
        (nowhere, "any", GatewayUnreachable),
        (where["address"], "not-a-hub-token", GatewayRefused),
    ):
        tenant_clusters = clusters(address, token)
        try:
            with pytest.raises(error) as e:
                tenant_clusters.client("acme", "professional")
        finally:
            tenant_clusters.close()
        message = str(e.value)
        assert message.startswith("the Dask Gateway"), message
        assert "Traceback" not in message and token not in message, message
        if error is GatewayUnreachable:
            assert f"at {nowhere} cannot be reached" in message, message
