"""Tenant isolation through the real JupyterHub REST API, on SQLite and PostgreSQL."""

import html

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tenancy_hub(request, hub_factory, tmp_path_factory):
    if request.param == "sqlite":
        return hub_factory()
    import uuid

    pg = request.getfixturevalue("postgres")
    return hub_factory(db_url=pg.create_database(f"hub_{uuid.uuid4().hex[:8]}"))


def test_tenant_admin_sees_only_own_tenant(tenancy_hub):
    hub = tenancy_hub
    token = hub.token("acme-admin")
    r = hub.api("GET", "/hub/api/users", token)
    assert r.status_code == 200
    assert sorted(u["name"] for u in r.json()) == ["acme-admin", "alice", "dave"]
    for other in ("bob", "globex-admin", "carol", "admin"):
        r = hub.api("GET", f"/hub/api/users/{other}", token)
        assert r.status_code in (403, 404), (other, r.status_code)
        r = hub.api("POST", f"/hub/api/users/{other}/server", token)
        assert r.status_code in (403, 404), (other, r.status_code)


def test_group_mirrors_tenant_with_tier(tenancy_hub):
    hub = tenancy_hub
    r = hub.api("GET", "/hub/api/groups/tenant-globex", hub.token("admin"))
    assert r.status_code == 200
    group = r.json()
    assert sorted(group["users"]) == ["bob", "globex-admin"]
    assert group["properties"]["tier"] == "starter"
    # a tenant admin cannot read another tenant's group
    r = hub.api("GET", "/hub/api/groups/tenant-globex", hub.token("acme-admin"))
    assert r.status_code in (403, 404)


def test_member_cannot_see_other_users(tenancy_hub):
    hub = tenancy_hub
    token = hub.token("alice")
    assert hub.api("GET", "/hub/api/users/alice", token).status_code == 200
    for other in ("dave", "acme-admin", "bob"):
        assert hub.api("GET", f"/hub/api/users/{other}", token).status_code in (403, 404)
    assert hub.api("POST", "/hub/api/users/dave/server", token).status_code in (403, 404)


def test_tenant_admin_starts_and_stops_member_server(tenancy_hub):
    hub = tenancy_hub
    token = hub.token("acme-admin")
    r = hub.api("POST", "/hub/api/users/alice/server", token)
    assert r.status_code in (201, 202), r.text
    from tests.harness import wait_for

    def ready():
        model = hub.api("GET", "/hub/api/users/alice", token).json()
        server = model["servers"].get("")
        return server and server["ready"]

    wait_for(ready, 90, interval=0.5, what="alice's server")
    r = hub.api("DELETE", "/hub/api/users/alice/server", token)
    assert r.status_code in (202, 204)
    wait_for(
        lambda: not hub.api("GET", "/hub/api/users/alice", token).json()["servers"], 30, what="stop"
    )


def test_suspended_tenant_users_cannot_log_in(tenancy_hub):
    hub = tenancy_hub
    hub.fedhub("tenant", "create", "stark", "--name", "Stark", "--tier", "starter")
    hub.fedhub("user", "add", "tony", "--tenant", "stark", "--password", "Suspended-login-1")
    assert hub.login("tony", "Suspended-login-1").status_code == 302
    hub.fedhub("tenant", "suspend", "stark")
    r = hub.login("tony", "Suspended-login-1")
    assert r.status_code == 403
    assert "organisation 'Stark' is suspended" in html.unescape(r.text)
