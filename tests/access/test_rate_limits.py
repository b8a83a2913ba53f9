"""Rate limits per tenant on a real hub: one count for the hub API and every service.

On SQLite and PostgreSQL, a tiers file gives Acme's tier (professional) an hourly cap of :data:`HOURLY` calls. Acme's
tenant admin spends it across the hub's REST API and the billing, audit and experiments
services (separate processes): every answer's ``RateLimit-Remaining`` goes down by one,
whichever process answered. At the cap each of them answers 429 with ``Retry-After`` and the
``RateLimit-*`` headers, one audit event and the hub's metric record it, Globex carries on,
and when the window is over Acme is let through again.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
HOURLY = 12
SERVICES = {
    "billing": "/services/billing/api/v1/usage",
    "audit": "/services/audit/api/v1/events",
    "experiments": "/services/experiments/api/v1/experiments",
}
HUB = "/hub/api/users/acme-admin"
HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After")


def tiny_tiers(path: Path) -> Path:
    doc = yaml.safe_load((ROOT / "hub_config" / "tiers.yaml").read_text())
    doc["tiers"]["professional"]["api_calls_per_hour"] = HOURLY
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request, hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    tiers = tiny_tiers(state / "tiny-tiers.yaml")
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres").create_database(f"rl_{uuid.uuid4().hex[:8]}")
    hub = HubProcess(
        state,
        db_url=db_url,
        password=DEMO_PASSWORD,
        fedhub_config=f"c.Fedhub.tiers_file = {str(tiers)!r}\n",
        env={"FEDHUB_AUDIT_INGEST_SECONDS": "0.5"},
    )
    try:
        hub.start(timeout=90)
        admin = hub.token("admin")  # a platform admin: no tenant, never limited
        for path in SERVICES.values():
            ready = lambda p=path: hub.api("GET", p, admin, params={"tenant": "acme"}).ok  # noqa: E731
            wait_for(ready, 60, 0.3, path)
        yield hub
    finally:
        hub.stop()


def remaining(r) -> int:
    assert r.headers["RateLimit-Limit"] == str(HOURLY), dict(r.headers)
    return int(r.headers["RateLimit-Remaining"])


def assert_refused(r, where: str) -> None:
    assert r.status_code == 429, f"{where}: {r.status_code} {r.text}"
    for name in HEADERS:
        assert name in r.headers, f"{where}: no {name} in {dict(r.headers)}"
    assert r.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert r.headers["Retry-After"] == r.headers["RateLimit-Reset"]
    error = r.json()["error"]
    assert error["code"] == "rate_limited", error
    assert "api_calls_per_hour" in error["message"] and "'professional'" in error["message"]
    assert "resets in" in error["message"]


def age_windows(hub, tenant: str) -> int:
    """Move the tenant's windows to their end, as an hour passing would (no 1-hour sleep)."""
    engine = create_engine(hub.db_url)
    with engine.begin() as conn:
        n = conn.execute(
            text("UPDATE fedhub_rate_limits SET expires_at = :t WHERE key LIKE :k"),
            {"t": time.time() - 1, "k": f"%/{tenant}/%"},
        ).rowcount
    engine.dispose()
    return n


@pytest.mark.slow
def test_one_count_across_hub_and_services_then_429_everywhere(hub):
    acme = hub.token("acme-admin")  # creating the token was one hub API call of Acme
    bob = hub.token("bob")  # Globex
    seen = [remaining(hub.api("GET", HUB, acme))]
    for path in SERVICES.values():
        r = hub.api("GET", path, acme)
        assert r.status_code == 200, r.text
        seen.append(remaining(r))
    # the hub and three service processes counted the same window, one call each
    assert seen == [HOURLY - 2, HOURLY - 3, HOURLY - 4, HOURLY - 5], seen
    while seen[-1] > 0:
        r = hub.api("GET", HUB, acme)
        assert r.status_code == 200, r.text
        seen.append(remaining(r))
    assert_refused(hub.api("GET", HUB, acme), "hub")
    body = hub.api("GET", HUB, acme).json()
    assert body["status"] == 429 and body["message"] == body["error"]["message"]  # JupyterHub's
    for name, path in SERVICES.items():
        assert_refused(hub.api("GET", path, acme), name)

    # another tenant is not affected, on the hub or in a service
    r = hub.api("GET", "/hub/api/users/bob", bob)
    assert r.status_code == 200 and remaining_of(r) > 0
    assert hub.api("GET", SERVICES["billing"], bob).status_code == 200

    # one audit event for the window, however many refusals; the hub's metric counts them all
    admin = hub.token("admin")
    params = {"tenant": "acme", "action": "ratelimit.exceeded"}

    def events():
        r = hub.api("GET", SERVICES["audit"], admin, params=params)
        return r.json()["events"] if r.status_code == 200 else []

    [event] = wait_for(events, 30, 0.3, "the ratelimit.exceeded event")
    assert event["details"]["limit"] == "api_calls_per_hour"
    assert event["details"]["allowed"] == HOURLY and event["actor"] == "acme-admin"
    metrics = hub.api("GET", "/hub/metrics", admin).text
    line = 'fedhub_rate_limited_requests_total{limit="api_calls_per_hour",where="hub"} 2.0'
    assert line in metrics

    # the hour is over: Acme's calls go through again, counted from one
    assert age_windows(hub, "acme") >= 1
    r = hub.api("GET", HUB, acme)
    assert r.status_code == 200 and remaining(r) == HOURLY - 1
    r = hub.api("GET", SERVICES["experiments"], acme)
    assert r.status_code == 200 and remaining(r) == HOURLY - 2


def remaining_of(r) -> int:
    return int(r.headers["RateLimit-Remaining"])


@pytest.mark.slow
def test_identity_lookups_and_platform_admins_are_not_counted(hub):
    """``GET /hub/api/user`` is how services check a token: counting it would count twice."""
    bob = hub.token("bob")
    before = remaining_of(hub.api("GET", "/hub/api/users/bob", bob))
    for _ in range(3):
        r = hub.api("GET", "/hub/api/user", bob)
        assert r.status_code == 200 and "RateLimit-Remaining" not in r.headers
    admin = hub.token("admin")
    r = hub.api("GET", "/hub/api/users/admin", admin)
    assert r.status_code == 200 and "RateLimit-Limit" not in r.headers
    assert remaining_of(hub.api("GET", "/hub/api/users/bob", bob)) == before - 1
