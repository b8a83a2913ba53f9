"""Service accounts' API keys on a real hub: made, used, listed, expired, revoked, audited,
never wider than their account and never outliving it; other tenants get 404."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.access.conftest import KEYS_API, SERVICES, make_key, new_service_account
from tests.harness import wait_for
from tests.security.test_identity import audit_events

pytestmark = pytest.mark.slow

USAGE = SERVICES["billing"] + "api/v1/usage"
EXPERIMENTS = SERVICES["experiments"] + "api/v1/experiments"
WITHIN_ONE_INTERVAL = 15  # the mirror runs every second; room for a busy machine


def refused(hub, token: str, path: str = USAGE) -> bool:
    return hub.api("GET", path, token).status_code in (401, 403)


def test_a_key_is_made_used_listed_and_revoked(access_hub):
    hub = access_hub
    account = new_service_account(hub, "acme")
    key = make_key(
        hub, "acme-admin", account, ["custom:fedhub:usage:read"], expires_in=3600, note="export"
    )
    assert key["scopes"] == ["custom:fedhub:usage:read!group=tenant-acme"]
    assert key["expires_at"] and key["note"] == "export"
    r = hub.api("GET", USAGE, key["token"])
    assert r.status_code == 200 and r.json()["tenant"] == "acme", r.text
    # the hub itself gives the key nothing more than its scopes
    assert hub.api("GET", "/hub/api/users", key["token"]).status_code == 403

    admin = hub.token("acme-admin")
    listing = hub.api("GET", f"{KEYS_API}/{account}/keys", admin).json()["keys"]
    [listed] = listing
    assert listed["id"] == key["id"] and "token" not in listed
    assert listed["scopes"] == key["scopes"] and listed["last_activity"]
    accounts = hub.api("GET", KEYS_API, admin).json()["service_accounts"]
    assert {"name": account, "tenant": "acme", "keys": 1} in accounts

    r = hub.api("DELETE", f"{KEYS_API}/{account}/keys/{key['id']}", admin)
    assert r.status_code == 204, r.text
    wait_for(lambda: refused(hub, key["token"]), WITHIN_ONE_INTERVAL, what="the key refused")
    assert hub.api("GET", f"{KEYS_API}/{account}/keys", admin).json()["keys"] == []

    created = [e for e in audit_events(hub, "key.created") if e["target"] == account]
    revoked = [e for e in audit_events(hub, "key.revoked") if e["target"] == account]
    assert [e["details"]["key_id"] for e in created] == [key["id"]]
    assert [e["details"]["key_id"] for e in revoked] == [key["id"]]
    assert all(e["tenant"] == "acme" and e["actor"] == "acme-admin" for e in created + revoked)
    assert key["token"] not in json.dumps(created + revoked)


def test_a_key_expires(access_hub):
    hub = access_hub
    account = new_service_account(hub, "acme")
    key = make_key(hub, "acme-admin", account, ["custom:fedhub:usage:read"], expires_in=3)
    wait_for(lambda: refused(hub, key["token"]), 30, what="the key to expire")


def test_a_key_cannot_be_wider_than_the_service_account_role(access_hub):
    hub = access_hub
    account = new_service_account(hub, "acme")
    admin = hub.token("acme-admin")
    path = f"{KEYS_API}/{account}/keys"
    for scope in (
        "custom:fedhub:billing:read",  # a tenant admin's, not a service account's
        "custom:fedhub:billing:manage",  # platform only
        "custom:fedhub:usage:read!group=tenant-globex",  # another tenant
        "admin:users",  # not fedhub's
    ):
        r = hub.api("POST", path, admin, json={"scopes": [scope]})
        assert r.status_code == 400, (scope, r.text)
        assert (
            r.json()["error"]["code"] == "invalid_request" and scope in r.json()["error"]["message"]
        )
    for body in (
        {"scopes": []},
        {"scopes": "custom:fedhub:usage:read"},
        {"scopes": ["custom:fedhub:usage:read"], "expires_in": 10 * 365 * 86400},
        {"scopes": ["custom:fedhub:usage:read"], "expires_in": "30d"},
    ):
        r = hub.api("POST", path, admin, json=body)
        assert r.status_code == 400 and "error" in r.json(), (body, r.text)
    assert hub.api("GET", path, admin).json()["keys"] == []


def test_a_key_narrows_when_its_account_does(access_hub):
    """The hub intersects a key's scopes with its account's at every request."""
    hub = access_hub
    account = new_service_account(hub, "acme")
    wide = ["custom:fedhub:usage:read", "custom:fedhub:usage:read-all"]
    key = make_key(hub, "admin", account, wide)  # a platform admin may, for any tenant
    assert "by_user" in hub.api("GET", USAGE, key["token"]).json()
    hub.fedhub("user", "set-role", account, "analyst")  # analysts: usage:read only

    def narrowed():
        scopes = hub.api("GET", "/hub/api/user", key["token"]).json()["scopes"]
        return "custom:fedhub:usage:read-all!group=tenant-acme" not in scopes

    wait_for(narrowed, WITHIN_ONE_INTERVAL, what="the hub to narrow the key")
    wait_for(
        lambda: "by_user" not in hub.api("GET", USAGE, key["token"]).json(),
        WITHIN_ONE_INTERVAL,
        what="the service to see the narrowed key",
    )


def test_deleting_the_account_kills_its_keys(access_hub):
    hub = access_hub
    account = new_service_account(hub, "acme")
    key = make_key(hub, "acme-admin", account, ["custom:fedhub:usage:read"])
    assert not refused(hub, key["token"])
    r = hub.api("DELETE", f"{KEYS_API}/{account}", hub.token("acme-admin"))
    assert r.status_code == 204, r.text
    assert hub.api("GET", "/hub/api/user", key["token"]).status_code == 403
    wait_for(lambda: refused(hub, key["token"]), WITHIN_ONE_INTERVAL, what="the key refused")
    assert hub.api("GET", f"/hub/api/users/{account}", hub.token("admin")).status_code == 404
    assert [e for e in audit_events(hub, "user.deleted") if e["target"] == account]


def test_the_cli_makes_lists_and_revokes_keys_and_deletes_accounts(access_hub):
    hub = access_hub
    account = f"cli-{uuid.uuid4().hex[:6]}"
    hub.fedhub("service-accounts", "create", "--tenant", "globex", account)

    def create():
        done = hub.fedhub(
            "keys",
            "create",
            "--account",
            account,
            "--scope",
            "custom:fedhub:usage:read",
            "--expires-in",
            "1d",
            check=False,
        )
        return done if done.returncode == 0 else None

    done = wait_for(create, WITHIN_ONE_INTERVAL, what="the hub to know the account")
    token = done.stdout.strip().splitlines()[-1]
    r = hub.api("GET", USAGE, token)
    assert r.status_code == 200 and r.json()["tenant"] == "globex", r.text
    [listed] = json.loads(hub.fedhub("keys", "list", "--account", account, "--json").stdout)
    assert listed["scopes"] == ["custom:fedhub:usage:read!group=tenant-globex"]
    assert token not in hub.fedhub("keys", "list", "--account", account).stdout

    refusal = hub.fedhub(
        "keys", "create", "--account", account, "--scope", "custom:fedhub:billing:read", check=False
    )
    assert refusal.returncode == 1 and "custom:fedhub:billing:read" in refusal.stderr
    assert len(refusal.stderr.strip().splitlines()) == 1 and "Traceback" not in refusal.stderr

    hub.fedhub("keys", "revoke", "--account", account, listed["id"])
    wait_for(lambda: refused(hub, token), WITHIN_ONE_INTERVAL, what="the revoked key refused")

    done = wait_for(create, WITHIN_ONE_INTERVAL, what="a second key")
    second = done.stdout.strip().splitlines()[-1]
    hub.fedhub("service-accounts", "delete", account)
    wait_for(lambda: refused(hub, second), WITHIN_ONE_INTERVAL, what="the key of a deleted account")
    wait_for(
        lambda: hub.api("GET", f"/hub/api/users/{account}", hub.token("admin")).status_code == 404,
        WITHIN_ONE_INTERVAL,
        what="the hub to delete the account and its tokens",
    )


def test_another_tenant_gets_404_and_members_403(access_hub):
    hub = access_hub
    account = new_service_account(hub, "acme")
    key = make_key(hub, "acme-admin", account, ["custom:fedhub:usage:read"])
    calls = [
        ("GET", f"{KEYS_API}/{account}/keys", None),
        ("POST", f"{KEYS_API}/{account}/keys", {"scopes": ["custom:fedhub:usage:read"]}),
        ("DELETE", f"{KEYS_API}/{account}/keys/{key['id']}", None),
        ("DELETE", f"{KEYS_API}/{account}", None),
        ("GET", f"{KEYS_API}?tenant=acme", None),
        ("POST", KEYS_API, {"name": f"x-{uuid.uuid4().hex[:6]}", "tenant": "acme"}),
    ]
    other = hub.token("globex-admin")
    for method, path, body in calls:
        r = hub.api(method, path, other, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "not_found"
        assert account not in r.text or "no service account" in r.text
    for person in ("alice", "dave", "bob"):
        r = hub.api("GET", f"{KEYS_API}/{account}/keys", hub.token(person))
        assert r.status_code == 403, (person, r.text)
    # the key of a service account is not a key to the keys API
    r = hub.api("POST", f"{KEYS_API}/{account}/keys", key["token"], json={"scopes": []})
    assert r.status_code == 403, r.text
    # and everything of acme's is where it was
    assert not refused(hub, key["token"])
    assert (
        len(hub.api("GET", f"{KEYS_API}/{account}/keys", hub.token("acme-admin")).json()["keys"])
        == 1
    )


def test_a_service_account_cannot_log_in(access_hub):
    account = new_service_account(access_hub, "acme")
    r = access_hub.login(account, "any-password-at-all")
    assert r.status_code != 302


@pytest.fixture(scope="module")
def pg_hub(hub_factory, postgres):
    hub = hub_factory(
        db_url=postgres.create_database(f"keys_{uuid.uuid4().hex[:8]}"),
        args=["--TenantAuthenticatorMixin.mirror_interval=1"],
    )
    admin = hub.token("admin")
    wait_for(lambda: hub.api("GET", USAGE + "?tenant=acme", admin).status_code == 200, 60)
    return hub


def test_keys_on_postgresql(pg_hub):
    """The hub API and the CLI (which writes into the hub's database itself) on PostgreSQL."""
    hub = pg_hub
    account = new_service_account(hub, "acme")
    key = make_key(hub, "acme-admin", account, ["custom:fedhub:usage:read"])
    assert hub.api("GET", USAGE, key["token"]).status_code == 200
    done = hub.fedhub(
        "keys", "create", "--account", account, "--scope", "custom:fedhub:experiments:read"
    )
    token = done.stdout.strip().splitlines()[-1]
    assert hub.api("GET", EXPERIMENTS, token).status_code == 200
    assert hub.api("GET", USAGE, token).status_code == 403  # not one of its scopes
    listed = hub.api("GET", f"{KEYS_API}/{account}/keys", hub.token("acme-admin")).json()["keys"]
    assert len(listed) == 2
    cli_key = next(k for k in listed if k["id"] != key["id"])
    r = hub.api("DELETE", f"{KEYS_API}/{account}/keys/{cli_key['id']}", hub.token("acme-admin"))
    assert r.status_code == 204, r.text
    wait_for(lambda: refused(hub, token, EXPERIMENTS), WITHIN_ONE_INTERVAL, what="revoked")
    assert not refused(hub, key["token"])
