"""The tenancy API on a real hub on PostgreSQL, where the handlers' transactions run in the
caller's row-level-security scope (a tenant's people in their tenant, platform admins as
platform work). One hub for members, invitations, teams and requests: the same endpoints'
SQLite runs (test_members.py, test_teams_hub.py, test_approvals_hub.py) test every rule;
here each part is shown to work, and to stay hidden from another tenant, through the
database's own policies. The stores' tests show the database hiding rows by itself.

- requests: a tenant admin asks and lists their own tenant's request, other tenants'
  people and a colleague get 404s, and a platform admin's approval writes the tenant's tier
  and its plan history (rows a tenant scope could not write for another tenant);
- members, invitations and teams: acme's admin reads and writes acme's rows, globex's admin
  is answered 404 on every one of acme's endpoints and sees none of acme's rows in its own
  lists."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from fedhub.billing.subscriptions import history
from fedhub.db import rls
from fedhub.tenancy import team_folders
from fedhub.tenancy.store import TenantStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

API = "/hub/api/fedhub/requests"


TENANTS = "/hub/api/fedhub/tenants"
TEAM = "pg-rls"  # acme's team in this module (Unix groups are per machine: a name of its own)


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    hub = hub_factory(db_url=postgres.create_database(f"tenancy_{uuid.uuid4().hex[:8]}"))
    store = TenantStore(hub.db_url)
    with rls.platform():
        store.add_user("gina", "globex", "analyst", password=hub.password)
    yield hub
    hub.stop()
    subprocess.run(["groupdel", team_folders.team_group("acme", TEAM)], capture_output=True)


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


def test_members_invitations_and_teams_through_row_level_security(hub):
    tokens = {name: hub.token(name) for name in ("acme-admin", "globex-admin")}
    acme = f"{TENANTS}/acme"
    # acme's admin writes acme's rows: an invitation (mailed to the outbox: no SMTP
    # server here), a role, a team with a member
    r = hub.api("POST", f"{acme}/invitations", tokens["acme-admin"],
                json={"email": "new.one@acme.example", "role": "member"})  # fmt: skip
    assert r.status_code == 201, r.text
    invitation = r.json()["id"]
    r = hub.api("PATCH", f"{acme}/members/dave", tokens["acme-admin"], json={"role": "member"})
    assert r.status_code == 200, r.text
    r = hub.api("POST", f"{acme}/teams", tokens["acme-admin"],
                json={"name": TEAM, "lead": "alice", "quotas": {"servers": 1}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = hub.api("PUT", f"{acme}/teams/{TEAM}/members/dave", tokens["acme-admin"])
    assert r.status_code == 200, r.text
    # and reads them back
    members = hub.api("GET", f"{acme}/members", tokens["acme-admin"]).json()["members"]
    assert {"acme-admin", "alice", "dave"} <= {m["username"] for m in members}
    assert next(m for m in members if m["username"] == "dave")["role"] == "member"
    listed = hub.api("GET", f"{acme}/invitations", tokens["acme-admin"]).json()
    assert invitation in [i["id"] for i in listed["invitations"]]
    team = hub.api("GET", f"{acme}/teams/{TEAM}", tokens["acme-admin"]).json()
    assert sorted(team["members"]) == ["alice", "dave"]
    assert hub.api("GET", f"{acme}/teams/{TEAM}/usage", tokens["acme-admin"]).status_code == 200
    # globex's admin: 404 on each of acme's endpoints, nothing of acme's in globex's lists
    for method, path, body in [
        ("GET", f"{acme}/members", None),
        ("PATCH", f"{acme}/members/dave", {"role": "analyst"}),
        ("GET", f"{acme}/invitations", None),
        ("POST", f"{acme}/invitations", {"email": "x@acme.example", "role": "member"}),
        ("POST", f"{acme}/invitations/{invitation}/resend", None),
        ("DELETE", f"{acme}/invitations/{invitation}", None),
        ("GET", f"{acme}/teams", None),
        ("POST", f"{acme}/teams", {"name": "spy"}),
        ("GET", f"{acme}/teams/{TEAM}", None),
        ("PUT", f"{acme}/teams/{TEAM}/members/bob", None),
        ("GET", f"{acme}/teams/{TEAM}/usage", None),
    ]:
        r = hub.api(method, path, tokens["globex-admin"], json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    globex = f"{TENANTS}/globex"
    seen = hub.api("GET", f"{globex}/members", tokens["globex-admin"]).json()["members"]
    assert {m["username"] for m in seen} & {"acme-admin", "alice", "dave"} == set()
    assert (
        hub.api("GET", f"{globex}/invitations", tokens["globex-admin"]).json()["invitations"] == []
    )
    assert hub.api("GET", f"{globex}/teams", tokens["globex-admin"]).json()["teams"] == []
    # nothing changed by the refused calls
    assert hub.api("GET", f"{acme}/teams/{TEAM}", tokens["acme-admin"]).json()["members"] == [
        "alice",
        "dave",
    ]
