"""server.culled and quota.warning, from the tier spawner's reconciler, reach the audit log."""

from __future__ import annotations

import pytest

from fedhub import metering
from fedhub.db import session_scope
from fedhub.db.base import utcnow
from fedhub.tenancy.store import TenantStore
from tests.audit.test_service import API, read_all
from tests.harness import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(
        args=["--TierSpawner.reconcile_interval=1", "--TierSpawner.idle_timeout_override=4"],
        env={"FEDHUB_AUDIT_INGEST_SECONDS": "0.5"},
    )


def test_quota_warning_and_idle_cull_are_audited(hub, monkeypatch):
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(hub.state_dir))
    store = TenantStore(hub.db_url)
    store.update_tenant("initech", overrides={"compute_hours_per_month": 1}, actor="admin")
    now = utcnow()
    with session_scope(hub.db_url) as s:  # 85 % of the month's compute already used
        metering.record(
            s,
            [metering.Usage("initech", "cpu_seconds", 0.85 * 3600, now, now, "test", "k", "carol")],
        )
    carol = hub.token("carol")
    assert hub.api("POST", "/hub/api/users/carol/server", carol).status_code in (201, 202)
    admin = hub.token("admin")

    def audited():
        got = read_all(hub, admin, tenant="initech")
        actions = {e["action"] for e in got}
        return {"quota.warning", "server.culled"} <= actions and got

    got = wait_for(audited, 120, interval=1, what="quota.warning and server.culled audited")
    warning = next(e for e in got if e["action"] == "quota.warning")
    assert warning["details"]["threshold"] == 80
    culled = next(e for e in got if e["action"] == "server.culled")
    assert culled["target"].startswith("carol")
    # visible to initech only
    r = hub.api(
        "GET", f"{hub.url}{API}/events", hub.token("acme-admin"), params={"action": "server.culled"}
    )
    assert r.status_code == 200 and r.json()["events"] == []
