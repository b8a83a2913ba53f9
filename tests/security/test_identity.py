"""Fail-closed identity against a real hub: renames, users without a membership,
deletion, suspension and XSRF (issue 10, routes 3, 5, 6 and the XSRF item of 8).

Every test that changes state makes its own tenant and users with the CLI, so
the tests do not depend on each other's order.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import psutil
import pytest
from tornado.web import create_signed_value

from fedhub import accounts
from fedhub.tenancy.store import TenantStore
from tests.harness import wait_for

pytestmark = pytest.mark.slow

MIRROR_INTERVAL = 1.0
# one mirror interval, plus room for a busy two-core machine
WITHIN_ONE_INTERVAL = 15
BILLING = "/services/billing/api/v1"
AUDIT = "/services/audit/api/v1"
EXPERIMENTS = "/services/experiments/api/v1"


# A stand-in single-user server (standard library only, up at once): what these
# tests check happens around the server process, not inside it. It runs as the
# user's own account with the system's python3, so it is written where that
# account can read it.
STAND_IN_SERVER = """
import http.server, os, signal, urllib.parse
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
signal.signal(signal.SIGTERM, signal.SIG_DFL)
url = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
http.server.ThreadingHTTPServer((url.hostname, url.port), Ok).serve_forever()
"""


@pytest.fixture(scope="module")
def hub(hub_factory, hub_state_root):
    server = hub_state_root / "identity_stand_in_server.py"
    server.write_text(STAND_IN_SERVER)
    server.chmod(0o644)
    # the reconciler keeps its production rhythm (60 s, 300 s grace): a suspended
    # tenant's server must stop because of the suspension, not the budget machinery
    hub = hub_factory(
        args=[
            f"--TenantAuthenticatorMixin.mirror_interval={MIRROR_INTERVAL}",
            "--Spawner.cmd=/usr/bin/python3",
            f"--Spawner.cmd={server}",
        ]
    )
    admin = hub.token("admin")
    for path in (f"{BILLING}/invoices", f"{AUDIT}/events", f"{EXPERIMENTS}/experiments"):
        wait_for(lambda p=path: hub.api("GET", p, admin).status_code == 200, 60, what=path)
    return hub


@pytest.fixture(scope="module")
def store(hub):
    return TenantStore(hub.db_url)


def new_tenant(hub, tier: str = "professional") -> tuple[str, str, str]:
    """A fresh tenant with a tenant admin and a member; returns (slug, admin, member)."""
    slug = f"t{uuid.uuid4().hex[:8]}"
    hub.fedhub("tenant", "create", slug, "--name", f"Tenant {slug}", "--tier", tier)
    admin, member = f"{slug}-admin", f"{slug}-m"
    hub.fedhub(
        "user", "add", admin, "--tenant", slug, "--role", "tenant-admin", "--password", hub.password
    )
    hub.fedhub("user", "add", member, "--tenant", slug, "--password", hub.password)
    wait_for(
        lambda: f"tenant-{slug}" in (hub_user(hub, member) or {}).get("groups", []),
        WITHIN_ONE_INTERVAL,
        what=f"the mirror to add {member} to the hub",
    )
    return slug, admin, member


def audit_events(hub, action: str) -> list[dict]:
    found = []
    for path in sorted((hub.state_dir / "spool").glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["action"] == action:
                found.append(event)
    return found


def hub_user(hub, name: str) -> dict | None:
    r = hub.api("GET", f"/hub/api/users/{name}", hub.token("admin"))
    return r.json() if r.status_code == 200 else None


def servers(hub, name: str) -> dict:
    return (hub_user(hub, name) or {}).get("servers", {})


# -- route 3: renames ------------------------------------------------------------


def test_rename_is_refused_and_the_member_keeps_their_membership(hub, store):
    slug, admin, member = new_tenant(hub)
    ghost = f"{member}-ghost"
    r = hub.api("PATCH", f"/hub/api/users/{member}", hub.token(admin), json={"name": ghost})
    assert r.status_code == 403, r.text
    assert "Renaming users is not supported" in r.json()["message"]  # the hub's JSON error
    # design: refused for platform admins too (docs/security.md, "Identity")
    r = hub.api("PATCH", f"/hub/api/users/{member}", hub.token("admin"), json={"name": ghost})
    assert r.status_code == 403, r.text

    assert hub_user(hub, ghost) is None
    model = hub_user(hub, member)
    assert model is not None and f"tenant-{slug}" in model["groups"]
    info = store.user(member)
    assert info is not None and info.tenant == slug
    refused = [e for e in audit_events(hub, "user.rename_refused") if e["tenant"] == slug]
    assert len(refused) == 2 and all(e["result"] == "denied" for e in refused)

    # everything else of PATCH is still JupyterHub's own
    r = hub.api("PATCH", f"/hub/api/users/{member}", hub.token(admin), json={"name": member})
    assert r.status_code == 200, r.text


# -- fail closed: a hub user fedhub does not know ---------------------------------


def test_hub_user_without_membership_gets_nothing(hub):
    admin = hub.token("admin")
    name = f"stray{uuid.uuid4().hex[:6]}"
    # even with the hub's admin flag: platform admins are fedhub memberships, nothing else
    r = hub.api("POST", f"/hub/api/users/{name}", admin, json={"admin": True})
    assert r.status_code == 201, r.text
    r = hub.api("POST", f"/hub/api/users/{name}/tokens", admin, json={"note": "stray"})
    assert r.status_code in (200, 201), r.text
    token = r.json()["token"]

    for path in (
        f"{BILLING}/invoices",
        f"{BILLING}/usage",
        f"{AUDIT}/events",
        f"{EXPERIMENTS}/experiments",
        f"{EXPERIMENTS}/quota",
    ):
        r = hub.api("GET", path, token)
        assert r.status_code == 403, (path, r.status_code, r.text)
    r = hub.api("PUT", f"{BILLING}/budget", token, json={"monthly_limit": 1, "thresholds": [80]})
    assert r.status_code == 403, r.text
    # and the hub itself refuses the token: no server, no user listing, no new tokens
    assert hub.api("GET", "/hub/api/users", token).status_code == 403
    assert hub.api("POST", f"/hub/api/users/{name}/tokens", token, json={}).status_code == 403
    assert hub.api("GET", f"/hub/api/users/{name}", token).status_code == 403


# -- route 5: deletion ------------------------------------------------------------


def _plant_home(hub, name: str):
    home = hub.state_dir / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
    (home / "notes.txt").write_text("the old person's file")
    return home


def _archived(hub, name: str) -> list:
    folder = hub.state_dir / "archive" / "homes"
    return sorted(folder.glob(f"{name}-*")) if folder.exists() else []


def _token_dead(hub, token: str) -> bool:
    return hub.api("GET", "/hub/api/user", token).status_code in (401, 403)


def test_deleted_user_is_gone_and_a_returning_name_is_a_new_person(hub, store):
    slug, admin, member = new_tenant(hub)
    other, _, _ = new_tenant(hub)
    old_token = hub.token(member)
    r = hub.api("POST", f"/hub/api/users/{member}/server", old_token)
    assert r.status_code in (201, 202), r.text
    server = wait_for(
        lambda: servers(hub, member).get("", {}).get("ready") and servers(hub, member)[""],
        90,
        what="the server",
    )
    pid = server["state"]["pid"]
    home = _plant_home(hub, member)
    account = accounts.account_name(member)

    r = hub.api("DELETE", f"/hub/api/users/{member}", hub.token(admin))
    assert r.status_code == 204, r.text
    wait_for(lambda: not psutil.pid_exists(pid), 10, what="the server process to end")
    if accounts.can_isolate():
        assert accounts.lookup(account) is None

    assert store.user(member) is None
    assert hub.login(member).status_code != 302  # the password went with the membership
    assert _token_dead(hub, old_token)
    assert hub.api("GET", f"{BILLING}/usage", old_token).status_code == 403
    assert not home.exists()
    [archive] = _archived(hub, member)
    assert (archive / "notes.txt").read_text() == "the old person's file"
    deleted = [e for e in audit_events(hub, "user.deleted") if e["target"] == member]
    assert deleted and deleted[0]["tenant"] == slug and deleted[0]["details"]["home_archived"]

    # the name comes back, in another tenant: nothing of the old person
    hub.fedhub("user", "add", member, "--tenant", other, "--password", hub.password)
    assert hub.login(member).status_code == 302
    new_token = hub.token(member, hub.password)
    assert hub.api("GET", f"/hub/api/users/{member}", new_token).json()["groups"] == [
        f"tenant-{other}"
    ]
    assert _token_dead(hub, old_token)
    assert not (home / "notes.txt").exists()
    tokens = hub.api("GET", f"/hub/api/users/{member}/tokens", new_token).json()["api_tokens"]
    assert [t["note"] for t in tokens] == ["fedhub tests"]


def test_cli_removal_is_finished_by_the_hub_within_one_mirror_interval(hub, store):
    slug, _, member = new_tenant(hub)
    token = hub.token(member)
    home = _plant_home(hub, member)

    hub.fedhub("user", "remove", member)
    wait_for(
        lambda: hub_user(hub, member) is None and _token_dead(hub, token),
        WITHIN_ONE_INTERVAL,
        what=f"the hub to delete {member}",
    )
    assert not home.exists() and _archived(hub, member)
    assert hub.login(member).status_code != 302


def test_deleting_a_tenant_deletes_its_users_in_the_hub(hub):
    slug, admin, member = new_tenant(hub)
    tokens = {name: hub.token(name) for name in (admin, member)}
    hub.fedhub("tenant", "delete", slug, "--yes")
    for name, token in tokens.items():
        wait_for(
            lambda n=name, t=token: hub_user(hub, n) is None and _token_dead(hub, t),
            WITHIN_ONE_INTERVAL,
            what=f"the hub to delete {name}",
        )


def test_a_name_given_again_before_the_mirror_ran_still_starts_empty(hub):
    slug, _, member = new_tenant(hub)
    other, _, _ = new_tenant(hub)
    token = hub.token(member)
    _plant_home(hub, member)
    # remove and add back at once: whether or not the mirror saw the gap, the hub
    # user (tokens, home) of the earlier person must not pass to the new one
    hub.fedhub("user", "remove", member)
    hub.fedhub("user", "add", member, "--tenant", other, "--password", hub.password)
    wait_for(lambda: _token_dead(hub, token), WITHIN_ONE_INTERVAL, what="the old token to die")
    wait_for(lambda: _archived(hub, member), WITHIN_ONE_INTERVAL, what="the home to be archived")
    assert not (hub.state_dir / "homes" / member / "notes.txt").exists()
    wait_for(
        lambda: (hub_user(hub, member) or {}).get("groups") == [f"tenant-{other}"],
        WITHIN_ONE_INTERVAL,
        what="the new person in the new tenant's group",
    )


# -- route 6: suspension ---------------------------------------------------------


def test_suspension_takes_effect_everywhere_within_one_mirror_interval(hub):
    slug, admin, member = new_tenant(hub)
    admin_token, member_token = hub.token(admin), hub.token(member)  # made before suspension
    budget = {"monthly_limit": 500, "thresholds": [80, 100]}
    assert hub.api("PUT", f"{BILLING}/budget", admin_token, json=budget).status_code == 200
    r = hub.api("POST", f"/hub/api/users/{member}/server", member_token)
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: servers(hub, member).get("", {}).get("ready"), 90, what="the server")

    hub.fedhub("tenant", "suspend", slug, "--reason", "unpaid")

    def refused(method, path, token, **kw):
        r = hub.api(method, path, token, **kw)
        return r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"

    wait_for(
        lambda: refused("PUT", f"{BILLING}/budget", admin_token, json=budget),
        WITHIN_ONE_INTERVAL,
        what="budget changes refused",
    )
    assert refused("POST", f"{BILLING}/events", admin_token, json={"events": []})
    assert refused("GET", f"{AUDIT}/events", admin_token)
    assert refused("GET", f"{BILLING}/usage", member_token)
    assert refused("GET", f"{EXPERIMENTS}/experiments", member_token)
    assert refused(
        "POST", f"{EXPERIMENTS}/experiments", member_token, json={"dataset": "synthetic"}
    )
    r = hub.api("GET", f"{BILLING}/invoices", admin_token)  # the tenant admin still reads invoices
    assert r.status_code == 200, r.text
    # the hub refuses the tenant's tokens too (it re-checks a user's standing at most once
    # per mirror interval, independently of the services), and the running server stops
    wait_for(
        lambda: hub.api("GET", f"/hub/api/users/{member}", member_token).status_code == 403,
        WITHIN_ONE_INTERVAL,
        what="the hub to refuse the suspended tenant's token",
    )
    wait_for(lambda: not servers(hub, member), WITHIN_ONE_INTERVAL, what="the server to stop")

    hub.fedhub("tenant", "resume", slug)
    wait_for(
        lambda: hub.api("PUT", f"{BILLING}/budget", admin_token, json=budget).status_code == 200,
        WITHIN_ONE_INTERVAL,
        what="the tenant to be resumed",
    )
    assert hub.api("GET", f"{EXPERIMENTS}/experiments", member_token).status_code == 200
    assert hub.api("GET", f"/hub/api/users/{member}", member_token).status_code == 200
    # tidy up: deleting the member removes the Unix account its server made (the hub
    # re-admits the resumed tenant admin within one mirror interval, like the refusal)
    wait_for(
        lambda: hub.api("DELETE", f"/hub/api/users/{member}", admin_token).status_code == 204,
        WITHIN_ONE_INTERVAL,
        what="the resumed tenant admin to delete the member",
    )


# -- XSRF (item 8) ---------------------------------------------------------------


def _service_cookie(hub, service: str, user_token: str) -> tuple[str, str]:
    """A service's OAuth session cookie for ``user_token``, signed as the service signs it.

    The service derives its cookie secret from its own hub token
    (``fedhub.web.cookie_secret``); the test, as root, reads it from the running
    service's environment, as a browser session would have it after OAuth.
    """
    proc = next(
        p
        for p in psutil.Process(hub.proc.pid).children(recursive=True)
        if f"fedhub.services.{service}" in " ".join(p.cmdline())
    )
    env = proc.environ()
    secret = hashlib.sha256(
        b"fedhub-service-cookie:" + env["JUPYTERHUB_API_TOKEN"].encode()
    ).digest()
    name = env["JUPYTERHUB_CLIENT_ID"]
    return name, create_signed_value(secret, name, user_token).decode()


def test_invalid_token_with_a_session_cookie_is_refused_not_xsrf_exempt(hub):
    slug, admin, _ = new_tenant(hub)
    name, value = _service_cookie(hub, "billing", hub.token(admin))
    cookies = {name: value}
    # the cookie is a working session for reads...
    assert hub.api("GET", f"{BILLING}/budget", cookies=cookies).status_code == 200
    budget = {"monthly_limit": 7, "thresholds": [80]}
    # ...but a write with it needs the XSRF token: a failed Authorization header
    # must not waive that check
    r = hub.api(
        "PUT",
        f"{BILLING}/budget",
        cookies=cookies,
        headers={"Authorization": "token bogus"},
        json=budget,
    )
    assert r.status_code == 403, r.text
    r = hub.api("PUT", f"{BILLING}/budget", cookies=cookies, json=budget)
    assert r.status_code == 403, r.text
    r = hub.api("GET", f"{BILLING}/budget", hub.token(admin))
    assert r.json()["monthly_limit"] != "7.00" and r.json()["monthly_limit"] != "7"
