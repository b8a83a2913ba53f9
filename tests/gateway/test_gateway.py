"""Must-show 1 of issue 17: a real hub running the real dask-gateway-server.

alice (acme, professional) creates a cluster from a notebook-like client configured only by
the environment the spawner gave her server, scales to her tier's maximum, is refused
beyond it and refused a second cluster, each time with the tier key named; her scheduler
and workers run as her Unix account; bob (globex) cannot list, read, scale, stop or connect
to her cluster; her workers' time is in acme's meter and bill, the cluster's start and stop
in acme's audit events. The test tiers give professional 2 workers and 1 cluster.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
import requests
import yaml
from sqlalchemy import func, select

from fedhub import accounts
from fedhub.db import session_scope
from fedhub.metering import MeterEvent
from fedhub.tiers import DEFAULT_TIERS_PATH
from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not accounts.can_isolate(), reason="clusters switch accounts: needs root"),
]
HERE = Path(__file__).resolve().parent
MAX_WORKERS = 2
GATEWAY = "/services/dask-gateway"


def tiers_file(folder: Path) -> Path:
    spec = yaml.safe_load(DEFAULT_TIERS_PATH.read_text())
    spec["tiers"]["professional"].update(gateway_max_workers=MAX_WORKERS, gateway_max_clusters=1)
    path = folder / "tiers.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def gw_hub(hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    config = "c.GatewaySettings.enabled = True\nc.FedhubBackend.meter_interval = 1.0\n"
    hub = HubProcess(state, password=DEMO_PASSWORD, fedhub_config=config,
                     env={"FEDHUB_TIERS": str(tiers_file(state))})  # fmt: skip
    hub.start()
    yield hub
    hub.stop()


def server_environment(hub: HubProcess, user: str) -> dict[str, str]:
    """The environment the spawner gave ``user``'s running server (read from /proc)."""
    token = hub.token(user)
    r = hub.api("POST", f"/hub/api/users/{user}/server", token)
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"][""]["ready"],
             120, 0.5, f"{user}'s server")  # fmt: skip
    account = accounts.account_name(user)
    [server] = [p for p in psutil.process_iter(["username", "cmdline"])
                if p.info["username"] == account and "jupyterhub-singleuser" in " ".join(
                    p.info["cmdline"] or [])]  # fmt: skip
    return server.environ()


def uids(pid: int) -> set[int]:
    """The real, effective, saved and filesystem uid of ``pid``, from /proc."""
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ln.startswith("Uid:"))  # fmt: skip
    return {int(x) for x in line.split()[1:]}


@pytest.fixture(scope="module")
def alice_session(gw_hub):
    """alice's notebook client, running as her account with her server's environment."""
    env = server_environment(gw_hub, "alice")
    keep = ("PATH", "LANG", "HOME", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL")
    client_env = {k: v for k, v in env.items() if k.startswith("DASK_GATEWAY__") or k in keep}
    # her own group too, as her server has: with root's group the checkout is unreachable
    # where its folders give the group nothing (a 0700 clone with o+x, as CI's is)
    alice = accounts.account_name("alice")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "notebook_client.py"), str(MAX_WORKERS)],
        env=client_env, cwd=env["HOME"], user=alice, group=alice, extra_groups=[],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    steps = {}

    def next_step():
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"client ended: {proc.stderr.read()[-3000:]}\n{gw_hub.log()[-3000:]}")
        step = json.loads(line)
        steps[step["step"]] = step
        return step

    steps["env"] = client_env
    for _ in ("options", "running", "refusals"):
        next_step()
    yield steps, proc, next_step
    if proc.poll() is None:
        proc.kill()


def test_alice_gets_a_cluster_from_the_spawners_environment_alone(alice_session, gw_hub):
    steps, _, _ = alice_session
    assert steps["env"]["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert steps["options"]["address"] == f"{gw_hub.url}{GATEWAY}"
    # her tier's options: at most 2 cores and 4 GB per worker (professional)
    assert steps["options"]["options"] == {"worker_cores": 1, "worker_memory": 2.0}
    assert len(steps["running"]["workers"]) == MAX_WORKERS


def test_beyond_the_tier_is_refused_naming_the_limit(alice_session):
    steps, _, _ = alice_session
    refusals = steps["refusals"]
    assert refusals["scale"] == (
        f"gateway_max_workers: the professional tier allows {MAX_WORKERS} workers per cluster, "
        f"asked for {MAX_WORKERS + 1} (a tenant admin can change the plan)"
    )
    assert refusals["second_cluster"].startswith(
        "gateway_max_clusters: the professional tier allows 1 Dask Gateway cluster(s) per "
        "tenant and acme has 1 running"
    )
    assert refusals["listed"] == [steps["running"]["cluster"]]


def test_scheduler_and_workers_run_as_her_account(alice_session):
    steps, _, _ = alice_session
    uid = accounts.lookup(accounts.account_name("alice")).pw_uid
    running = steps["running"]
    assert set(running["worker_uids"].values()) == {uid}
    # scratch space inside the cluster's private folder (named after the cluster)
    for folder in running["scratch"].values():
        assert running["cluster"] in folder and not folder.startswith("/tmp/dask-scratch-space")
    for pid in [running["scheduler"], *running["workers"].values()]:
        assert uids(pid) == {uid}, f"process {pid}"
        # and the gateway gave them nothing of the hub: no token, no database
        environ = psutil.Process(pid).environ()
        assert not {"JUPYTERHUB_API_TOKEN", "FEDHUB_DB_URL"} & set(environ)


def test_her_processes_serve_no_dashboard_a_neighbour_could_open(alice_session):
    """A dashboard has no login; on loopback any local account could reach it."""
    steps, _, _ = alice_session
    running = steps["running"]
    ports = [c.laddr.port for pid in [running["scheduler"], *running["workers"].values()]
             for c in psutil.Process(pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert ports
    for port in ports:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/status", timeout=3)
        except requests.RequestException:
            continue  # TLS or not HTTP
        assert r.status_code != 200, f"port {port} serves /status"


def close(gateway) -> None:
    """Close a dask_gateway client for good: its ``__del__`` closes it again and reads its
    stopped loop, an exception pytest reports at the end of the session."""
    gateway.close()
    del gateway._loop_runner


def test_bob_of_another_tenant_cannot_see_or_touch_her_cluster(alice_session, gw_hub):
    from dask_gateway import Gateway, JupyterHubAuth

    steps, _, _ = alice_session
    name = steps["running"]["cluster"]
    env = steps["env"]
    bob = Gateway(address=env["DASK_GATEWAY__ADDRESS"], proxy_address=env[
        "DASK_GATEWAY__PROXY_ADDRESS"], auth=JupyterHubAuth(gw_hub.token("bob")))  # fmt: skip
    try:
        assert bob.list_clusters() == []
        with pytest.raises(Exception, match="403"):
            bob.connect(name)
    finally:
        close(bob)
    headers = {"Authorization": f"jupyterhub {gw_hub.token('bob')}"}
    base = f"{GATEWAY}/api/v1/clusters/{name}"
    for method, path, body in (("GET", base, None), ("POST", f"{base}/scale", {"count": 1}),
                               ("POST", f"{base}/scale", {"count": 99}),
                               ("DELETE", base, None)):  # fmt: skip
        r = gw_hub.api(method, path, headers=dict(headers), json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "BEGIN" not in r.text and "gateway_max" not in r.text  # no cert, no limits
    # her cluster is untouched
    r = gw_hub.api("GET", base, headers={"Authorization": f"jupyterhub {env_token(steps)}"})
    assert r.json()["status"] == "RUNNING"


def env_token(steps) -> str:
    return steps["env"]["JUPYTERHUB_API_TOKEN"]


def test_worker_time_is_in_acmes_usage_and_the_cluster_in_its_audit(alice_session, gw_hub):
    steps, proc, next_step = alice_session
    name = steps["running"]["cluster"]
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    assert next_step() == {"step": "stopped", "left": []}
    proc.wait(30)

    def totals() -> dict[str, float]:
        """Alice's gateway meters by kind, read at one moment (a slice writes its kinds
        in one transaction, so they agree within one read)."""
        with session_scope(gw_hub.db_url) as s:
            q = select(MeterEvent.kind, func.sum(MeterEvent.quantity)).where(
                MeterEvent.tenant == "acme", MeterEvent.username == "alice",
                MeterEvent.source == "gateway").group_by(MeterEvent.kind)  # fmt: skip
            return {kind: float(total) for kind, total in s.execute(q)}

    # the last slice is written when each worker stops; two workers ran for at least
    # the test's steps
    metered = wait_for(
        lambda: (t := totals()).get("dask_worker_seconds", 0.0) > 1.0 and t, 30, 0.5, "worker time"
    )
    worker_seconds = metered["dask_worker_seconds"]
    assert metered["cpu_seconds"] == pytest.approx(worker_seconds)  # 1 core each
    with session_scope(gw_hub.db_url) as s:
        other = s.scalar(select(func.count()).select_from(MeterEvent).where(
            MeterEvent.source == "gateway", MeterEvent.tenant != "acme"))  # fmt: skip
    assert other == 0
    # billing prices the cores x time as compute hours of acme
    usage = gw_hub.api("GET", "/services/billing/api/v1/usage", gw_hub.token("acme-admin")).json()
    # (the usage API shows hours to six decimals: less than a millionth below)
    assert float(usage["meters"]["compute_hours"]["usage"]) >= worker_seconds / 3600 - 1e-6
    # acme's audit log (ingested by the audit service) holds the cluster's start and stop
    admin = gw_hub.token("acme-admin")

    def audited():
        r = gw_hub.api("GET", "/services/audit/api/v1/events?action=gateway.", admin)
        events = [e for e in r.json()["events"] if e["target"] == name]
        return {e["action"] for e in events} >= {
            "gateway.cluster_created", "gateway.cluster_stopped"} and events  # fmt: skip

    events = wait_for(audited, 30, 0.5, "the cluster's audit events")
    assert {(e["tenant"], e["actor"]) for e in events} == {("acme", "alice")}


def service_token(hub: HubProcess, service: str) -> str:
    """The API token the hub gave its managed service ``service`` (read from /proc)."""
    [proc] = [p for p in psutil.Process(hub.proc.pid).children(recursive=True)
              if p.cmdline()[-2:] == ["-m", f"fedhub.services.{service}"]]  # fmt: skip
    return proc.environ()["JUPYTERHUB_API_TOKEN"]


def test_the_experiments_service_runs_a_tenants_cluster_as_the_tenants_account(alice_session,
                                                                              gw_hub):  # fmt: skip
    from dask_gateway import Gateway, JupyterHubAuth

    from services.experiments.gateway_clusters import ClusterSize, TenantGatewayClusters

    env = alice_session[0]["env"]
    where = {"address": env["DASK_GATEWAY__ADDRESS"],
             "proxy_address": env["DASK_GATEWAY__PROXY_ADDRESS"]}  # fmt: skip
    auth = JupyterHubAuth(service_token(gw_hub, "experiments"))
    # The service's own code path: a plain distributed.Client on the cluster's report (a
    # GatewayCluster's client can hang on close, which is why the service does not use one).
    clusters = TenantGatewayClusters(
        where["address"], auth, size_of=lambda tenant, tier: ClusterSize(workers=1),
        busy=lambda tenant: False, registry=None, idle_timeout=0, start_timeout=90,
        keepalive_interval=0, log=logging.getLogger("test"),
        proxy_address=where["proxy_address"],
    )  # fmt: skip
    service = Gateway(**where, auth=auth)
    bob = Gateway(**where, auth=JupyterHubAuth(gw_hub.token("bob")))
    try:
        client = clusters.client("globex", "starter")
        account = accounts.lookup(accounts.ACCOUNT_PREFIX[:-1] + "_t_globex")  # fedhub_t_globex
        assert set(client.run(os.getuid).values()) == {account.pw_uid}
        with pytest.raises(ValueError, match="already runs cluster"):
            service.submit(tenant="globex")
        assert bob.list_clusters() == []  # globex's member does not see the service's cluster
        service.stop_cluster(clusters.cluster_name("globex"))
    finally:
        clusters.close()
        close(service)
        close(bob)

    def recorded():
        with session_scope(gw_hub.db_url) as s:
            rows = s.execute(select(MeterEvent.kind, MeterEvent.username).where(
                MeterEvent.tenant == "globex", MeterEvent.source == "gateway")).all()  # fmt: skip
        return set(rows)

    # worker time for reports only: the service bills its own usage (client-hours)
    assert wait_for(recorded, 30, 0.5, "globex's worker time") == {
        ("dask_worker_seconds", "service:experiments")
    }
