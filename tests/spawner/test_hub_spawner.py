"""The tier spawner in a real hub: refusals as the user sees them, a real spawn race,
run-time enforcement with a tiny budget, tier kernels, metrics.

Real single-user servers cost ~4 s each here, so only three are started; the spawn race,
run thirty times on each engine, starts servers that are up in ~50 ms.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from uuid import uuid4

import pytest

from fedhub import metering
from fedhub.db import session_scope
from fedhub.db.base import utcnow
from fedhub.extensions.hub import session_guard
from fedhub.tenancy.models import TenantStatus
from fedhub.tenancy.store import TenantStore
from tests.harness import wait_for
from tests.spawner import race

pytestmark = pytest.mark.slow

INTERVAL = 1.0
GRACE = 2.0


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(
        args=[
            f"--TierSpawner.reconcile_interval={INTERVAL}",
            f"--TierSpawner.budget_grace_period={GRACE}",
            "--TierSpawner.storage_cache_seconds=0",
            "--JupyterHub.allow_named_servers=True",
        ]
    )


@pytest.fixture(scope="module")
def store(hub):
    return TenantStore(hub.db_url)


def events(hub, action=None) -> list[dict]:
    found = []
    for path in sorted((hub.state_dir / "spool").glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if action is None or e["action"] == action:
                found.append(e)
    return found


def servers(hub, user, token):
    return hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"]


def stop_all(hub, user, token):
    for name in list(servers(hub, user, token)):
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        hub.api("DELETE", path, token, json={"remove": True} if name else None)
    wait_for(lambda: not servers(hub, user, token), 60, what=f"{user}'s servers to stop")


def test_suspended_tenant_is_refused_with_its_message(hub, store):
    admin = hub.token("admin")
    store.set_status("initech", TenantStatus.SUSPENDED, reason="test")
    try:
        r = hub.api("POST", "/hub/api/users/carol/server", admin)
        assert r.status_code == 403, r.text
        assert "Your organisation 'Initech' is suspended" in r.json()["message"]
    finally:
        store.set_status("initech", TenantStatus.ACTIVE)
    refused = events(hub, "server.spawn_refused")
    assert any(e["details"]["reason"] == "tenant_suspended" for e in refused)


def test_profile_outside_the_tier_is_a_400(hub):
    r = hub.api("POST", "/hub/api/users/bob/server", hub.token("bob"), json={"profile": "large"})
    assert r.status_code == 400, r.text
    msg = r.json()["message"]
    assert "'large' is not part of your organisation's Starter tier" in msg
    assert "small, medium" in msg


def test_compute_hours_used_up_is_refused(hub, store):
    now = utcnow()
    with session_scope(hub.db_url) as s:
        metering.record(
            s,
            [
                metering.Usage(
                    "initech", "cpu_seconds", 11 * 3600, now, now, "test", "spent", "carol"
                )
            ],
        )
    r = hub.api("POST", "/hub/api/users/carol/server", hub.token("carol"))
    assert r.status_code == 429, r.text
    msg = r.json()["message"]
    assert "used 11.00 of the 10 compute hours" in msg and "Servers can start again on" in msg


def test_storage_over_quota_is_refused(hub, store):
    home = hub.state_dir / "homes" / "globex-admin"
    home.mkdir(parents=True, exist_ok=True)
    (home / "big.bin").write_bytes(b"\1" * (3 * 1024 * 1024))
    store.update_tenant("globex", overrides={"storage_gb": 0.001})
    try:
        # (JupyterHub re-uses the last user_options when none are given)
        r = hub.api(
            "POST", "/hub/api/users/bob/server", hub.token("bob"), json={"profile": "small"}
        )
        assert r.status_code == 429, r.text
        assert "home directories use 0.003 GB of the 0.001 GB" in r.json()["message"]
    finally:
        store.update_tenant("globex", overrides={"storage_gb": None})
        (home / "big.bin").unlink()


ROUNDS = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def race_hub(request, hub_factory):
    """A hub on each engine whose servers start in ~50 ms (tests/spawner/fast_server.py),
    with the session guard strict: any use of the hub's session off the loop is a 500."""
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres").create_database(f"race_{uuid4().hex[:12]}")
    hub = hub_factory(
        db_url=db_url,
        args=[
            "--JupyterHub.allow_named_servers=True",
            f"--TierSpawner.reconcile_interval={INTERVAL}",
            "--TierSpawner.storage_cache_seconds=0",
            *race.FAST_SERVER_ARGS,
        ],
        env={session_guard.ENV: "strict"},
    )
    yield hub
    hub.stop()


def test_simultaneous_spawns_start_exactly_the_limit(race_hub, request):
    """Eight named servers requested at once against a tenant limit of 2, thirty times in
    a row: each time exactly two start, six get a 429, none a 5xx; all stopped between."""
    hub = race_hub
    store = TenantStore(hub.db_url)
    store.update_tenant("acme", overrides={"max_servers_per_tenant": 2, "max_servers_per_user": 10})
    token = hub.token("alice")
    try:
        tic = time.monotonic()
        for i in range(ROUNDS):
            if i:
                race.stop_all(hub, "alice", token, "acme")
            results = race.race_round(hub, "alice", token, n=8, limit=2, tag=f"race{i}")
            refused = next(r for r in results if r.status_code == 429).json()["message"]
            assert "Your organisation is running 2 of the 2 servers" in refused, (i, refused)
        elapsed = time.monotonic() - tic
        print(f"{ROUNDS} rounds of 8 spawns on {request.node.callspec.id}: {elapsed:.1f} s")

        # the per-user limit, and the spawn page showing the refusal
        store.update_tenant(
            "acme", overrides={"max_servers_per_tenant": 25, "max_servers_per_user": 2}
        )
        r = hub.api("POST", "/hub/api/users/alice/servers/third", token)
        assert r.status_code == 429
        assert "You already have 2 of the 2 servers" in r.json()["message"]
        login = hub.login("alice")
        s = login.session
        page = s.get(f"{hub.url}/hub/spawn/alice/third", timeout=30)
        assert 'name="profile" value="small"' in page.text and 'value="large"' in page.text
        r = s.post(
            f"{hub.url}/hub/spawn/alice/third",
            data={"profile": "small", "_xsrf": s.cookies.get("_xsrf")},
            timeout=30,
        )
        assert r.status_code == 429
        assert "You already have 2 of the 2 servers" in r.text
    finally:
        store.update_tenant(
            "acme", overrides={"max_servers_per_tenant": None, "max_servers_per_user": None}
        )
        race.stop_all(hub, "alice", token, "acme")
    metrics = hub.api("GET", "/hub/metrics", hub.token("admin")).text  # behind auth
    refusals = 'fedhub_spawn_refusals_total{reason="tenant_server_limit",tenant="acme"}'
    assert f"{refusals} {6.0 * ROUNDS}" in metrics
    assert "fedhub_reconciler_runs_total" in metrics
    violations = "fedhub_session_thread_violations_total{"
    assert not [line for line in metrics.splitlines() if line.startswith(violations)]
    assert not race.guard_report(hub), race.guard_report(hub)


def _ts(event) -> datetime:
    return datetime.fromisoformat(event["time"]).replace(tzinfo=None)


def test_over_budget_servers_stop_after_grace_and_usage_matches_run_time(hub, store):
    # 0.003 CPU-hours = 10.8 s of the 1-CPU small profile
    store.update_tenant("globex", overrides={"compute_hours_per_month": 0.003})
    token = hub.token("bob")
    try:
        r = hub.api("POST", "/hub/api/users/bob/server", token, json={"profile": "small"})
        assert r.status_code in (201, 202), r.text
        wait_for(lambda: servers(hub, "bob", token).get("", {}).get("ready"), 90, what="ready")
        ready_at = utcnow()
        # the tier's kernels, and only those
        specs = hub.api("GET", "/user/bob/api/kernelspecs", token).json()["kernelspecs"]
        assert set(specs) == {"python3", "fedhub-torch"}
        assert specs["fedhub-torch"]["spec"]["display_name"] == "fedhub (PyTorch + Dask)"
        wait_for(lambda: not servers(hub, "bob", token), 60, interval=0.25, what="budget stop")
        stopped = [e for e in events(hub, "server.stopped") if e["target"] == "bob/"][-1]
        assert stopped["details"]["reason"] == "compute_budget_exhausted"
        warnings = [e for e in events(hub, "quota.warning") if e["tenant"] == "globex"]
        assert sorted(w["details"]["threshold"] for w in warnings) == [80, 100]
        full = _ts(next(w for w in warnings if w["details"]["threshold"] == 100))
        # stopped after the grace period, not before; then within a run or two (a server
        # still starting is stopped once it is up: JupyterHub cannot stop a pending spawn)
        requested_stop = datetime.fromisoformat(stopped["details"]["requested_at"])
        assert (requested_stop - full).total_seconds() >= GRACE
        due = max(full + timedelta(seconds=GRACE), ready_at)
        assert (requested_stop - due).total_seconds() <= 2 * INTERVAL + 1
        requested = [e for e in events(hub, "server.spawn_requested") if e["target"] == "bob/"][-1]
        run_time = (_ts(stopped) - _ts(requested)).total_seconds()
        with session_scope(hub.db_url) as s:
            recorded = metering.usage_total(
                s, "globex", "server_seconds", utcnow() - timedelta(hours=1), username="bob"
            )
        assert abs(recorded - run_time) <= INTERVAL, (recorded, run_time)
        # and it cannot start again this month
        r = hub.api("POST", "/hub/api/users/bob/server", token)
        assert r.status_code == 429 and "compute hours" in r.json()["message"]
    finally:
        store.update_tenant("globex", overrides={"compute_hours_per_month": None})
        if servers(hub, "bob", token):
            stop_all(hub, "bob", token)
