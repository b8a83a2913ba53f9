"""The audit service in a real hub: every event kind from its real owner (must-show 1),
tenant scoping of every endpoint (must-show 3), delivery after downtime (must-show 4)."""

from __future__ import annotations

import csv
import io
import json
import signal
import uuid

import psutil
import pytest

from fedhub.tenancy.models import TenantStatus
from tests.harness import wait_for

pytestmark = pytest.mark.slow

API = "/services/audit/api/v1"
WRONG = "not-the-password-123"


@pytest.fixture(scope="module")
def hub(hub_factory):
    # poll_interval: the hub notices (and restarts) a dead managed service within ~1 s
    return hub_factory(
        args=["--Spawner.poll_interval=1"], env={"FEDHUB_AUDIT_INGEST_SECONDS": "0.5"}
    )


def read_all(hub, token, **params) -> list[dict]:
    out, cursor = [], None
    while True:
        q = dict(params, limit=1000, **({"cursor": cursor} if cursor else {}))
        r = hub.api("GET", f"{hub.url}{API}/events", token, params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["events"]
        cursor = body["next_cursor"]
        if not cursor:
            return out


def wait_actions(hub, expected: set[str], timeout=60, **params) -> list[dict]:
    admin = hub.token("admin")
    seen: list[dict] = []

    def arrived():
        seen[:] = read_all(hub, admin, **params)
        return expected <= {e["action"] for e in seen}

    try:
        wait_for(arrived, timeout, interval=0.5, what=f"audit events {sorted(expected)}")
    except TimeoutError:
        missing = expected - {e["action"] for e in seen}
        raise AssertionError(f"never reached the audit log: {sorted(missing)}") from None
    return seen


@pytest.fixture
def store(hub, monkeypatch):
    """The hub's TenantStore, in this process, spooling into the hub's spool (the
    store is what emits tenant.* and user.* events; the CLI only wraps it)."""
    from fedhub.tenancy.store import TenantStore

    monkeypatch.setenv("FEDHUB_STATE_DIR", str(hub.state_dir))
    monkeypatch.delenv("FEDHUB_EVENTS_SPOOL", raising=False)
    return TenantStore(hub.db_url)


def test_every_event_kind_from_its_owner(hub, store):
    slug = f"aud{uuid.uuid4().hex[:6]}"
    # tenancy (TenantStore)
    store.create_tenant(slug, tier="free", actor="admin")
    store.update_tenant(slug, tier="starter", actor="admin")
    store.add_user(f"{slug}-u", slug, password=WRONG + "x", actor="admin")
    store.set_role(f"{slug}-u", "tenant-admin", actor="admin")
    store.remove_user(f"{slug}-u", actor="admin")
    store.set_status(slug, TenantStatus.SUSPENDED, reason="audit test", actor="admin")
    store.set_status(slug, TenantStatus.ACTIVE, actor="admin")
    store.delete_tenant(slug, actor="admin")
    # authentication (the local authenticator)
    assert hub.login("alice").status_code == 302
    assert hub.login("bob", password=WRONG).status_code != 302
    store.add_user("locky", "initech", password=WRONG + "x", actor="admin")
    for _ in range(5):
        hub.login("locky", password=WRONG)
    store.enable_totp("locky")  # enrol
    hub.login("locky", password=WRONG + "x")  # locked now
    r = hub.login("alice")
    r.session.get(f"{hub.url}/hub/logout", timeout=10)
    # tokens (hub request hook)
    token = hub.token("globex-admin")
    tokens = hub.api("GET", "/hub/api/users/globex-admin/tokens", token).json()["api_tokens"]
    victim = next(t for t in tokens if t["note"] == "fedhub tests")
    extra = hub.api(
        "POST", "/hub/api/users/globex-admin/tokens", token, json={"note": "to revoke"}
    ).json()
    assert hub.api("DELETE", f"/hub/api/users/globex-admin/tokens/{extra['id']}", token).ok
    assert victim
    # authorization denials: the hub's (403) and a fedhub service's
    assert hub.api("POST", "/hub/api/users/newbie", hub.token("alice")).status_code == 403
    assert hub.api("GET", f"{hub.url}{API}/events", hub.token("alice")).status_code == 403
    # a state-changing hub API call
    assert hub.api("POST", f"/hub/api/groups/audit-{slug}", hub.token("admin")).status_code == 201
    # a state-changing call to another fedhub service (billing)
    r = hub.api(
        "PUT",
        f"{hub.url}/services/billing/api/v1/budget",
        hub.token("acme-admin"),
        json={"monthly_limit": 500, "thresholds": [80, 100]},
    )
    assert r.status_code == 200, r.text
    # servers (the tier spawner): refused, requested, started, stopped
    bob = hub.token("bob")
    assert (
        hub.api("POST", "/hub/api/users/bob/server", bob, json={"profile": "large"}).status_code
        == 400
    )
    alice = hub.token("alice")
    assert hub.api("POST", "/hub/api/users/alice/server", alice).status_code in (201, 202)
    wait_for(
        lambda: (
            hub.api("GET", "/hub/api/users/alice", alice).json()["servers"].get("", {}).get("ready")
        ),
        120,
        interval=0.5,
        what="alice's server",
    )
    assert hub.api("DELETE", "/hub/api/users/alice/server", alice).status_code in (202, 204)

    expected = {
        "tenant.created",
        "tenant.updated",
        "tenant.tier_changed",
        "tenant.suspended",
        "tenant.resumed",
        "tenant.deleted",
        "user.created",
        "user.role_changed",
        "user.removed",
        "auth.login",
        "auth.login_failed",
        "auth.lockout",
        "auth.totp_enrolled",
        "auth.logout",
        "token.created",
        "token.revoked",
        "authz.denied",
        "hub.api_call",
        "billing.budget_set",
        "server.spawn_refused",
        "server.spawn_requested",
        "server.started",
        "server.stopped",
    }
    seen = wait_actions(hub, expected, timeout=90)
    by_action = {}
    for e in seen:
        by_action.setdefault(e["action"], []).append(e)
    assert any(e["tenant"] == slug for e in by_action["tenant.tier_changed"])
    assert any(
        e["actor"] == "bob" and e["details"].get("reason") == "wrong_credentials"
        for e in by_action["auth.login_failed"]
    )
    assert any(e["target"] == "locky" for e in by_action["auth.lockout"])
    assert any(e["actor"] == "alice" and e["tenant"] == "acme" for e in by_action["auth.logout"])
    revoked = by_action["token.revoked"]
    assert any(e["details"]["token_id"] == extra["id"] and e["tenant"] == "globex" for e in revoked)
    assert any(e["details"].get("reason") == "hub_scope" for e in by_action["authz.denied"])
    assert any(e["details"].get("reason") == "permission" for e in by_action["authz.denied"])
    budget = by_action["billing.budget_set"]
    assert any(e["actor"] == "acme-admin" and e["tenant"] == "acme" for e in budget)
    assert all(
        e["source_ip"] == "127.0.0.1" for e in by_action["auth.login"] if e["actor"] == "alice"
    )
    # and the whole log verifies, with the CLI, exit 0
    hub.fedhub("audit", "checkpoint")
    r = hub.fedhub("audit", "verify")
    assert r.returncode == 0 and "FAILED" not in r.stdout, r.stdout + r.stderr


ENDPOINTS = [
    ("events", {}),
    ("events", {"format": "jsonl"}),
    ("events", {"format": "csv"}),
    ("verify", {}),
    ("checkpoints", {}),
]


@pytest.mark.parametrize("path,params", ENDPOINTS)
def test_another_tenants_log_is_out_of_reach(hub, path, params):
    acme = hub.token("acme-admin")
    r = hub.api("GET", f"{hub.url}{API}/{path}", acme, params={**params, "tenant": "globex"})
    assert r.status_code in (403, 404), r.text
    assert "globex-admin" not in r.text
    # unfiltered, a tenant admin gets their own tenant only
    r = hub.api("GET", f"{hub.url}{API}/{path}", acme, params=params)
    assert r.status_code == 200, r.text
    if path == "events":
        rows = (
            [json.loads(x) for x in r.text.splitlines()]
            if params.get("format") == "jsonl"
            else list(csv.DictReader(io.StringIO(r.text)))
            if params.get("format") == "csv"
            else r.json()["events"]
        )
        assert rows and {e["tenant"] for e in rows} == {"acme"}
    elif path == "verify":
        assert [c["tenant"] for c in r.json()["chains"]] == ["acme"]
    else:
        assert {json.loads(c["payload"])["tenant"] for c in r.json()["checkpoints"]} <= {"acme"}
    # members may not read their tenant's log; other tenants' admins see none of acme's
    assert (
        hub.api("GET", f"{hub.url}{API}/{path}", hub.token("alice"), params=params).status_code
        == 403
    )
    r = hub.api(
        "GET",
        f"{hub.url}{API}/{path}",
        hub.token("globex-admin"),
        params={**params, "tenant": "acme"},
    )
    assert r.status_code in (403, 404) and "acme-admin" not in r.text


def test_roles_and_tier_features(hub):
    # analysts of a tier with analyst_audit_read (acme: professional) may read
    r = hub.api("GET", f"{hub.url}{API}/events", hub.token("dave"))
    assert r.status_code == 200 and {e["tenant"] for e in r.json()["events"]} <= {"acme"}
    # a starter tenant's admin reads but may not export (features.audit_export: false)
    g = hub.token("globex-admin")
    assert hub.api("GET", f"{hub.url}{API}/events", g).status_code == 200
    assert hub.api("GET", f"{hub.url}{API}/events", g, params={"format": "csv"}).status_code == 403
    # an actor filter cannot reach across tenants
    r = hub.api("GET", f"{hub.url}{API}/events", hub.token("acme-admin"), params={"actor": "bob"})
    assert r.status_code == 200 and r.json()["events"] == []
    # the public key holds no tenant data: any user may fetch it
    r = hub.api("GET", f"{hub.url}{API}/public-key", hub.token("bob"))
    assert r.status_code == 200 and r.text.startswith("-----BEGIN PUBLIC KEY-----")
    # platform admins see every chain
    r = hub.api("GET", f"{hub.url}{API}/verify", hub.token("admin"))
    assert r.status_code == 200 and r.json()["ok"], r.text
    assert {"acme", "_platform"} <= {c["tenant"] for c in r.json()["chains"]}


def _audit_process(hub) -> psutil.Process:
    for child in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if "fedhub.services.audit" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("audit service process not found")


def test_events_emitted_while_the_service_is_down_are_delivered_once(hub, store):
    """Must-show 4: freeze the service, emit, kill it; the hub restarts it and
    every event arrives exactly once."""
    hub.token("admin")
    proc = _audit_process(hub)
    proc.send_signal(signal.SIGSTOP)
    try:
        slug = f"down{uuid.uuid4().hex[:6]}"
        store.create_tenant(slug, actor="admin")
        for i in range(3):
            store.update_tenant(slug, name=f"Down {i}", actor="admin")
        store.set_status(slug, TenantStatus.SUSPENDED, actor="admin")
        hub.fedhub("tenant", "resume", slug)  # and one from another process
        spooled = set()
        for path in (hub.state_dir / "spool").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                e = json.loads(line)
                if e["tenant"] == slug:
                    spooled.add(e["id"])
        assert len(spooled) == 6
        proc.send_signal(signal.SIGKILL)  # a crash: no final ingestion
    finally:
        proc.send_signal(signal.SIGCONT)
    wait_for(lambda: _audit_process(hub).pid != proc.pid, 60, what="the hub to restart the service")
    admin = hub.token("admin")

    def delivered():
        r = hub.api("GET", f"{hub.url}{API}/events", admin, params={"tenant": slug})
        return r.status_code == 200 and len(r.json()["events"]) >= 6 and r.json()["events"]

    got = wait_for(delivered, 60, interval=0.5, what="delivery after restart")
    ids = [e["id"] for e in got]
    assert sorted(ids) == sorted(spooled) and len(ids) == len(set(ids))
    assert [e["seq"] for e in got] == list(range(1, 7))
