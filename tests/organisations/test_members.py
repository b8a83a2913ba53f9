"""Tenants, members and invitations through the hub's tenancy API (#13), on one real hub.

The demo's people (acme: acme-admin, alice a member, dave an analyst; globex:
globex-admin, bob; the platform admin ``admin``) call every endpoint; another tenant's
admin is answered 404 and a tenant's own member or analyst 403 where the change is an
admin's. Invitations are emailed to a real SMTP server in this process (aiosmtpd); the
tests follow the link through the sign-up form as a person would, and log in. The helpers
are in ``members_helpers.py`` and ``hub_helpers.py``; the tests stay in this one module
(one hub per engine).
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from fedhub import db
from fedhub.db.base import utcnow
from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess
from tests.organisations.hub_helpers import mail_config, smtp_server
from tests.organisations.hub_helpers import spool_events as events
from tests.organisations.members_helpers import (
    TENANTS,
    Mailbox,
    accept,
    add_user,
    call,
    error,
    invite,
    link_to,
    sql,
    text,
)

pytestmark = pytest.mark.slow

PEOPLE = ("admin", "acme-admin", "alice", "dave", "globex-admin")


@pytest.fixture(scope="module")
def smtp():
    inbox = Mailbox()
    with smtp_server(inbox) as controller:
        yield controller, inbox


@pytest.fixture(scope="module")
def inbox(smtp):
    return smtp[1]


@pytest.fixture(scope="module")
def hub(smtp, hub_state_root, hub_factory):
    """The demo hub on SQLite, its mail going to the in-process SMTP server (config in its
    state). The same endpoints through PostgreSQL's row-level security:
    test_tenancy_api_pg.py."""
    controller, inbox = smtp
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    (state / "jupyterhub_config.py").write_text(mail_config(controller))
    hub = HubProcess(state, password=DEMO_PASSWORD)
    hub.keep = False
    hub_factory.started.append(hub)  # stopped with the module; its log checked at the end
    hub.start()
    yield hub
    hub.stop()
    db.dispose_engines()


@pytest.fixture(scope="module")
def tok(hub):
    return {name: hub.token(name) for name in PEOPLE}


# -- tenants ------------------------------------------------------------------------


def test_tenants_are_listed_and_read_only_by_whom_they_concern(hub, tok):
    everyone = call(hub, tok, "admin", "GET", "")
    assert everyone.status_code == 200
    slugs = {t["slug"] for t in everyone.json()["tenants"]}
    assert {"acme", "globex", "initech"} <= slugs
    acme = next(t for t in everyone.json()["tenants"] if t["slug"] == "acme")
    assert acme["tier"] == "professional" and acme["status"] == "active"
    assert acme["members"] >= 3 and acme["created_at"].endswith("Z")
    for who in ("acme-admin", "alice", "dave"):
        mine = call(hub, tok, who, "GET", "").json()["tenants"]
        assert [t["slug"] for t in mine] == ["acme"], who
        assert call(hub, tok, who, "GET", "/acme").json()["name"] == "Acme Corporation"
    assert [t["slug"] for t in call(hub, tok, "globex-admin", "GET", "").json()["tenants"]] == [
        "globex"
    ]
    error(call(hub, tok, "globex-admin", "GET", "/acme"), 404, "not_found")
    error(call(hub, tok, "admin", "GET", "/no-such-tenant"), 404, "not_found")
    assert call(hub, tok, "admin", "GET", "/globex").json()["tier"] == "starter"
    error(hub.api("GET", TENANTS), 403)  # nobody


def test_platform_admins_create_change_suspend_and_resume_tenants(hub, tok):
    r = call(hub, tok, "admin", "POST", "", {"name": "Hooli Labs", "tier": "free"})
    assert r.status_code == 201, r.text
    assert r.json()["slug"] == "hooli-labs" and r.json()["status"] == "active"
    again = call(hub, tok, "admin", "POST", "", {"name": "Hooli Labs", "tier": "free"})
    assert again.status_code == 201 and again.json()["slug"] == "hooli-labs-2"
    named = call(hub, tok, "admin", "POST", "",
                 {"slug": "piedpiper", "name": "Pied Piper", "tier": "starter",
                  "domains": ["piedpiper.example"]})  # fmt: skip
    assert named.status_code == 201 and named.json()["email_domains"] == ["piedpiper.example"]
    error(call(hub, tok, "admin", "POST", "", {"slug": "piedpiper", "name": "x", "tier": "free"}),
          409, "conflict")  # fmt: skip
    for who in ("acme-admin", "alice", "globex-admin"):
        error(call(hub, tok, who, "POST", "", {"name": "Mine", "tier": "free"}), 403, "forbidden")

    # a platform admin's token made with fewer scopes does not manage tenants
    r = hub.api("POST", "/hub/api/users/admin/tokens", tok["admin"],
                json={"scopes": ["read:users", "custom:fedhub:tenant:read"]})  # fmt: skip
    narrow = {"admin": r.json()["token"]}
    err = error(call(hub, narrow, "admin", "POST", "", {"name": "Narrow", "tier": "free"}), 403)
    assert "tenants:manage" in err["message"]
    error(call(hub, narrow, "admin", "POST", "/acme/suspend", {"reason": "x"}), 403)
    assert call(hub, narrow, "admin", "GET", "/acme").status_code == 200

    # bad input: 400 in fedhub's shape, nothing made
    assert "unknown tier 'gold'" in error(
        call(hub, tok, "admin", "POST", "", {"name": "X", "tier": "gold"}), 400)["message"]  # fmt: skip
    assert "missing field(s) name" in error(
        call(hub, tok, "admin", "POST", "", {"tier": "free"}), 400)["message"]  # fmt: skip
    error(call(hub, tok, "admin", "POST", "", {"name": "X", "tier": "free", "plan": 1}), 400)
    error(call(hub, tok, "admin", "POST", "", {"slug": "Bad Slug", "name": "X", "tier": "free"}),
          400)  # fmt: skip
    error(hub.api("POST", TENANTS, tok["admin"], data=b"{not json"), 400, "invalid_request")
    error(hub.api("POST", TENANTS, tok["admin"], json=["a list"]), 400, "invalid_request")

    # a tier change: platform admins only (a tenant admin asks through a request)
    r = call(hub, tok, "admin", "PATCH", "/hooli-labs", {"tier": "starter", "name": "Hooli"})
    assert r.status_code == 200 and (r.json()["tier"], r.json()["name"]) == ("starter", "Hooli")
    error(call(hub, tok, "acme-admin", "PATCH", "/acme", {"tier": "enterprise"}), 403)
    error(call(hub, tok, "alice", "PATCH", "/acme", {"name": "Mine"}), 403)
    error(call(hub, tok, "globex-admin", "PATCH", "/acme", {"tier": "free"}), 404)
    error(call(hub, tok, "admin", "PATCH", "/hooli-labs", {"tier": "gold"}), 400)
    error(call(hub, tok, "admin", "PATCH", "/hooli-labs", {}), 400)
    error(call(hub, tok, "admin", "PATCH", "/hooli-labs", {"status": "x"}), 400)
    assert call(hub, tok, "admin", "GET", "/acme").json()["tier"] == "professional"

    # suspend (a reason is required) and resume
    error(call(hub, tok, "admin", "POST", "/hooli-labs/suspend", {}), 400)
    error(call(hub, tok, "acme-admin", "POST", "/acme/suspend", {"reason": "x"}), 403)
    error(call(hub, tok, "dave", "POST", "/acme/suspend", {"reason": "x"}), 403)
    error(call(hub, tok, "globex-admin", "POST", "/acme/suspend", {"reason": "x"}), 404)
    error(call(hub, tok, "globex-admin", "POST", "/acme/resume"), 404)
    r = call(hub, tok, "admin", "POST", "/hooli-labs/suspend", {"reason": "unpaid invoice"})
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["suspended_reason"]) == ("suspended", "unpaid invoice")
    r = call(hub, tok, "admin", "POST", "/hooli-labs/resume")
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert call(hub, tok, "acme-admin", "GET", "/acme").json()["status"] == "active"

    # every change audited, with the platform admin as actor
    for action in ("tenant.created", "tenant.tier_changed", "tenant.suspended", "tenant.resumed"):
        found = [e for e in events(hub, action) if e["tenant"] == "hooli-labs"]
        assert found and found[-1]["actor"] == "admin", action


# -- members ------------------------------------------------------------------------


def test_members_and_their_roles(hub, tok):
    as_member = call(hub, tok, "alice", "GET", "/acme/members")
    assert as_member.status_code == 200
    people = {m["username"]: m for m in as_member.json()["members"]}
    assert people["dave"]["role"] == "analyst" and people["alice"]["teams"] == []
    assert {"acme-admin", "alice", "dave"} <= set(people) and "bob" not in people
    assert all(m["email"] is None for m in people.values())  # addresses: admins only
    add_user(hub, "ivy", email="ivy@acme.example")
    as_admin = call(hub, tok, "acme-admin", "GET", "/acme/members").json()["members"]
    assert {m["username"]: m["email"] for m in as_admin}["ivy"] == "ivy@acme.example"
    assert call(hub, tok, "dave", "GET", "/acme/members").status_code == 200
    assert call(hub, tok, "admin", "GET", "/acme/members").status_code == 200
    error(call(hub, tok, "globex-admin", "GET", "/acme/members"), 404)

    # role changes: a tenant admin's (or a platform admin's)
    for who in ("alice", "dave"):
        error(call(hub, tok, who, "PATCH", "/acme/members/ivy", {"role": "analyst"}), 403)
    error(call(hub, tok, "globex-admin", "PATCH", "/acme/members/ivy", {"role": "analyst"}), 404)
    error(call(hub, tok, "globex-admin", "PATCH", "/globex/members/ivy", {"role": "member"}), 404)
    r = call(hub, tok, "acme-admin", "PATCH", "/acme/members/ivy", {"role": "analyst"})
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    error(call(hub, tok, "acme-admin", "PATCH", "/acme/members/ivy", {"role": "platform-admin"}),
          403)  # fmt: skip
    error(call(hub, tok, "acme-admin", "PATCH", "/acme/members/ivy", {"role": "boss"}), 400)
    error(call(hub, tok, "acme-admin", "PATCH", "/acme/members/ivy", {}), 400)
    error(call(hub, tok, "acme-admin", "PATCH", "/acme/members/bob", {"role": "member"}), 404)
    error(call(hub, tok, "acme-admin", "PATCH", "/acme/members/admin", {"role": "member"}), 404)
    # the last tenant admin stays one; with a second admin, the first may step down
    err = error(
        call(hub, tok, "acme-admin", "PATCH", "/acme/members/acme-admin", {"role": "member"}), 409
    )
    assert "last tenant admin" in err["message"]
    assert call(hub, tok, "admin", "PATCH", "/acme/members/ivy",
                {"role": "tenant-admin"}).status_code == 200  # fmt: skip
    r = call(hub, tok, "acme-admin", "PATCH", "/acme/members/ivy", {"role": "member"})
    assert r.status_code == 200 and r.json()["role"] == "member"
    changed = [e for e in events(hub, "user.role_changed") if e["target"] == "ivy"]
    assert [(e["actor"], e["details"]["to"]) for e in changed] == [
        ("acme-admin", "analyst"), ("admin", "tenant-admin"), ("acme-admin", "member")
    ]  # fmt: skip


def test_removing_a_member_retires_them_through_the_hub(hub, tok):
    password = "Removed-member-pw-7"
    add_user(hub, "gus", password=password)
    gus = hub.token("gus", password)  # a hub user with a token
    assert hub.api("GET", "/hub/api/user", gus).status_code == 200
    add_user(hub, "hal")  # never came to the hub
    for who in ("alice", "dave"):
        error(call(hub, tok, who, "DELETE", "/acme/members/gus"), 403)
    error(call(hub, tok, "globex-admin", "DELETE", "/acme/members/gus"), 404)
    error(call(hub, tok, "acme-admin", "DELETE", "/acme/members/bob"), 404)
    err = error(call(hub, tok, "acme-admin", "DELETE", "/acme/members/acme-admin"), 409)
    assert "last tenant admin" in err["message"]

    r = call(hub, tok, "acme-admin", "DELETE", "/acme/members/gus")
    assert r.status_code == 204, r.text
    assert hub.api("GET", "/hub/api/user", gus).status_code == 403  # its token went with it
    assert hub.api("GET", "/hub/api/users/gus", tok["admin"]).status_code == 404
    assert hub.login("gus", password).status_code == 403
    assert call(hub, tok, "admin", "DELETE", "/acme/members/hal").status_code == 204
    left = {m["username"] for m in call(hub, tok, "acme-admin", "GET", "/acme/members").json()[
        "members"]}  # fmt: skip
    assert not {"gus", "hal"} & left
    removed = {e["target"]: e["actor"] for e in events(hub, "member.removed")}
    assert removed["gus"] == "acme-admin" and removed["hal"] == "admin"
    assert any(e["target"] == "gus" for e in events(hub, "user.deleted"))  # home archived


# -- invitations ----------------------------------------------------------------------


def test_an_emailed_invitation_makes_a_member_who_logs_in(hub, tok, inbox):
    address = "carl@elsewhere.example"
    r = call(hub, tok, "acme-admin", "POST", "/acme/invitations",
             {"email": "Carl@Elsewhere.example", "role": "analyst"})  # fmt: skip
    assert r.status_code == 201, r.text
    sent = r.json()
    assert (sent["email"], sent["role"], sent["state"]) == (address, "analyst", "pending")
    assert "token" not in sent and "invitation=" not in r.text  # the link is in the email only

    link = link_to(inbox, address)
    assert link.startswith(f"{hub.url}/hub/signup?invitation=")
    msg = inbox.to(address)[0]
    assert msg["From"] == "fedhub <noreply@hub.example>"
    assert "Acme Corporation" in msg["Subject"]
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "within 7 days" in body and "as analyst" in body
    code = link.split("invitation=", 1)[1]
    assert not sql(hub, "SELECT 1 FROM fedhub_invitations WHERE token_hash = :c", c=code)

    page = requests.get(link, timeout=10)
    assert "You are invited to join Acme Corporation as analyst" in text(page)
    r = accept(link, "carl", address, "Invited-analyst-pw-3")
    assert r.status_code == 200, text(r)
    assert "Your account carl is ready" in text(r)
    assert hub.login("carl", "Invited-analyst-pw-3").status_code == 302
    people = {m["username"]: m for m in call(hub, tok, "acme-admin", "GET", "/acme/members").json()[
        "members"]}  # fmt: skip
    assert people["carl"]["role"] == "analyst" and people["carl"]["email"] == address
    listed = call(hub, tok, "acme-admin", "GET", "/acme/invitations").json()["invitations"]
    assert next(i for i in listed if i["id"] == sent["id"])["state"] == "accepted"
    # the link is spent
    assert requests.get(link, timeout=10).status_code == 400
    invited = [e for e in events(hub, "user.invited") if e["target"] == address]
    assert invited and invited[0]["actor"] == "acme-admin" and invited[0]["tenant"] == "acme"

    # who may see and send invitations
    assert call(hub, tok, "admin", "GET", "/acme/invitations").status_code == 200
    r = hub.api("POST", "/hub/api/users/acme-admin/tokens", tok["acme-admin"],
                json={"scopes": ["custom:fedhub:tenant:read!group=tenant-acme"]})  # fmt: skip
    assert r.status_code == 201, r.text
    reader = {"acme-admin": r.json()["token"]}  # the admin's token, made to read only
    assert call(hub, reader, "acme-admin", "GET", "/acme/members").status_code == 200
    error(call(hub, reader, "acme-admin", "GET", "/acme/invitations"), 403)
    error(call(hub, reader, "acme-admin", "POST", "/acme/invitations", {"email": "x@y.example"}),
          403)  # fmt: skip
    for who in ("alice", "dave"):
        error(call(hub, tok, who, "GET", "/acme/invitations"), 403)
        error(call(hub, tok, who, "POST", "/acme/invitations", {"email": "x@y.example"}), 403)
    error(call(hub, tok, "globex-admin", "GET", "/acme/invitations"), 404)
    error(call(hub, tok, "globex-admin", "POST", "/acme/invitations", {"email": "x@y.example"}),
          404)  # fmt: skip
    globex = call(hub, tok, "globex-admin", "GET", "/globex/invitations").json()["invitations"]
    assert all(i["email"] != address for i in globex)


def test_a_resent_invitation_kills_the_old_link_at_most_once_a_minute(hub, tok, inbox):
    address = "erin@elsewhere.example"
    sent = invite(hub, tok, address)
    first = link_to(inbox, address)
    path = f"/acme/invitations/{sent['id']}/resend"
    err = error(call(hub, tok, "acme-admin", "POST", path), 429, "too_soon")
    assert "second(s)" in err["message"]
    for who in ("alice", "dave"):
        error(call(hub, tok, who, "POST", path), 403)
    error(call(hub, tok, "globex-admin", "POST", path), 404)
    error(call(hub, tok, "globex-admin", "POST", f"/globex/invitations/{sent['id']}/resend"), 404)
    # a minute later (the last link's time moved back rather than waiting)
    sql(hub, "UPDATE fedhub_invitations SET sent_at = :t WHERE id = :id",
        t=utcnow() - timedelta(seconds=61), id=sent["id"])  # fmt: skip
    r = call(hub, tok, "acme-admin", "POST", path)
    assert r.status_code == 200, r.text
    assert r.json()["resent_count"] == 1 and r.json()["state"] == "pending"
    second = link_to(inbox, address, 2)
    assert second != first
    old = requests.get(first, timeout=10)
    assert old.status_code == 400 and "not valid" in text(old)
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup", timeout=10)
    code = first.split("invitation=", 1)[1]
    form = {"username": "erin", "email": address, "password": "Resent-link-pw-4x",
            "invitation": code, "_xsrf": s.cookies.get("_xsrf")}  # fmt: skip
    refused = s.post(f"{hub.url}/hub/signup", data=form, timeout=30)
    assert refused.status_code == 400 and "not valid" in text(refused)
    assert accept(second, "erin", address, "Resent-link-pw-4x").status_code == 200
    assert hub.login("erin", "Resent-link-pw-4x").status_code == 302
    resent = [e for e in events(hub, "user.invitation_resent") if e["target"] == address]
    assert resent and resent[0]["actor"] == "acme-admin"


def test_expired_and_revoked_invitations_do_not_open_the_door(hub, tok, inbox):
    expiring = invite(hub, tok, "fay@elsewhere.example", days=1)
    fay = link_to(inbox, "fay@elsewhere.example")
    sql(hub, "UPDATE fedhub_invitations SET expires_at = :t WHERE id = :id",
        t=utcnow() - timedelta(minutes=1), id=expiring["id"])  # fmt: skip
    r = requests.get(fay, timeout=10)
    assert r.status_code == 400 and "expired" in text(r)
    listed = call(hub, tok, "acme-admin", "GET", "/acme/invitations").json()["invitations"]
    assert next(i for i in listed if i["id"] == expiring["id"])["state"] == "expired"

    revoked = invite(hub, tok, "gil@elsewhere.example", role="tenant-admin")
    gil = link_to(inbox, "gil@elsewhere.example")
    path = f"/acme/invitations/{revoked['id']}"
    error(call(hub, tok, "alice", "DELETE", path), 403)
    error(call(hub, tok, "dave", "DELETE", path), 403)
    error(call(hub, tok, "globex-admin", "DELETE", path), 404)
    error(call(hub, tok, "globex-admin", "DELETE", f"/globex/invitations/{revoked['id']}"), 404)
    assert call(hub, tok, "acme-admin", "DELETE", path).status_code == 204
    assert call(hub, tok, "acme-admin", "DELETE", path).status_code == 204  # once is enough
    r = requests.get(gil, timeout=10)
    assert r.status_code == 400 and "revoked" in text(r)
    error(call(hub, tok, "acme-admin", "POST", path + "/resend"), 409, "conflict")
    listed = call(hub, tok, "acme-admin", "GET", "/acme/invitations").json()["invitations"]
    assert next(i for i in listed if i["id"] == revoked["id"])["state"] == "revoked"
    revokes = [e for e in events(hub, "user.invitation_revoked") if e["target"].startswith("gil")]
    assert len(revokes) == 1 and revokes[0]["actor"] == "acme-admin"
    # a new invitation to the same address is fine once the old one is revoked
    assert call(hub, tok, "admin", "POST", "/acme/invitations",
                {"email": "gil@elsewhere.example"}).status_code == 201  # fmt: skip


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"email": "not-an-address"}, "invalid email address"),
        ({"email": "x@y.example", "role": "platform-admin"}, "cannot make a platform-admin"),
        ({"email": "x@y.example", "role": "service-account"}, "cannot make a service-account"),
        ({"email": "x@y.example", "role": "owner"}, "unknown role"),
        ({"email": "x@y.example", "days": 0}, "days must be"),
        ({"email": "x@y.example", "days": 31}, "days must be"),
        ({"email": "x@y.example", "days": "7"}, "days must be"),
        ({"email": "x@y.example", "link": "x"}, "unknown field(s) link"),
        ({"role": "member"}, "missing field(s) email"),
        ({"email": ["x@y.example"]}, "email must be a string"),
    ],
)
def test_bad_invitations_are_refused_with_the_reason(hub, tok, body, words):
    err = error(call(hub, tok, "acme-admin", "POST", "/acme/invitations", body), 400)
    assert words in err["message"]


def test_invitations_refuse_duplicates_members_and_unknown_ids(hub, tok, inbox):
    invite(hub, tok, "hank@elsewhere.example")
    err = error(call(hub, tok, "acme-admin", "POST", "/acme/invitations",
                     {"email": "hank@elsewhere.example"}), 409)  # fmt: skip
    assert "pending invitation" in err["message"]
    add_user(hub, "jo", email="jo@acme.example")
    error(call(hub, tok, "acme-admin", "POST", "/acme/invitations",
               {"email": "jo@acme.example"}), 409)  # fmt: skip
    error(call(hub, tok, "acme-admin", "POST", "/acme/invitations/abc/resend"), 404)
    error(call(hub, tok, "acme-admin", "DELETE", "/acme/invitations/999999"), 404)
    error(hub.api("POST", TENANTS + "/acme/invitations", tok["acme-admin"], data=b"]"), 400)
    assert not inbox.to("x@y.example")  # nothing refused was mailed


def test_the_cli_resends_and_revokes_the_same_invitations(hub, tok, inbox):
    sent = invite(hub, tok, "ida@elsewhere.example")
    soon = hub.fedhub("user", "resend-invitation", str(sent["id"]), "--tenant", "acme",
                      check=False)  # fmt: skip
    assert soon.returncode != 0 and "second(s)" in soon.stderr + soon.stdout
    hub.fedhub("user", "revoke-invitation", str(sent["id"]), "--tenant", "acme")
    listed = call(hub, tok, "acme-admin", "GET", "/acme/invitations").json()["invitations"]
    assert next(i for i in listed if i["id"] == sent["id"])["state"] == "revoked"


def test_an_invitation_that_cannot_be_mailed_is_not_left_behind(hub, tok):
    r = call(hub, tok, "acme-admin", "POST", "/acme/invitations", {"email": "kim@refused.example"})
    err = error(r, 503, "mail_not_sent")
    assert "could not be sent" in err["message"] and "refused.example:" not in err["message"]
    listed = call(hub, tok, "acme-admin", "GET", "/acme/invitations").json()["invitations"]
    assert [i["state"] for i in listed if i["email"] == "kim@refused.example"] == ["revoked"]
    # so asking again is not refused as a duplicate
    error(call(hub, tok, "acme-admin", "POST", "/acme/invitations",
               {"email": "kim@refused.example"}), 503, "mail_not_sent")  # fmt: skip
