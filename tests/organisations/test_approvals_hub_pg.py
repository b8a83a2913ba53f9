"""Approval requests on a real hub on PostgreSQL, where the handlers' transactions run in
the caller's row-level-security scope (a tenant's people in their tenant, platform admins
as platform work): a tenant admin asks and lists their own tenant's request, other
tenants' people and a colleague get 404s, and a platform admin's approval writes the
tenant's tier and its plan history (rows a tenant scope could not write for another
tenant). The store's tests show the database hiding rows by itself."""

from __future__ import annotations

import uuid

import pytest

from fedhub.billing.subscriptions import history
from fedhub.db import rls
from fedhub.tenancy.store import TenantStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

API = "/hub/api/fedhub/requests"


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    hub = hub_factory(db_url=postgres.create_database(f"approvals_{uuid.uuid4().hex[:8]}"))
    store = TenantStore(hub.db_url)
    with rls.platform():
        store.add_user("gina", "globex", "analyst", password=hub.password)
    return hub


def test_requests_through_row_level_security(hub):
    tokens = {name: hub.token(name) for name in ("admin", "acme-admin", "alice", "globex-admin",
                                                 "gina")}  # fmt: skip
    r = hub.api("POST", API, tokens["globex-admin"],
                json={"kind": "tier_change", "payload": {"tier": "professional"}})  # fmt: skip
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = hub.api("POST", f"{API}/{rid}/comments", tokens["gina"], json={"text": "hi"})
    assert r.status_code == 404, r.text  # an analyst: a colleague's request is not theirs
    for other in ("acme-admin", "alice"):
        assert hub.api("GET", f"{API}/{rid}", tokens[other]).status_code == 404
        assert hub.api("GET", API, tokens[other]).json()["requests"] == []
    [seen] = hub.api("GET", API, tokens["globex-admin"]).json()["requests"]
    assert seen["id"] == rid and seen["tenant"] == "globex"
    assert [q["id"] for q in hub.api("GET", API + "?tenant=globex", tokens["admin"]).json()
            ["requests"]] == [rid]  # fmt: skip
    r = hub.api("POST", f"{API}/{rid}/approve", tokens["admin"], json={"reason": "ok"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    store = TenantStore(hub.db_url)
    with rls.platform():
        assert store.get_tenant("globex").tier == "professional"
        with store.session() as s:
            assert [h.tier for h in history(s, "globex")][-1] == "professional"
