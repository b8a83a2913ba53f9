"""Approval requests on a real hub: the API (``/hub/api/fedhub/requests``) as each kind of
person calls it, another tenant's admin, member and analyst refused on every endpoint,
fedhub's error shape for bad input, the audit events in the hub's spool, the emails a real
in-process SMTP server receives, a ``join_tenant`` request made by a real sign-up, and
``fedhub requests`` at the CLI.

One demo hub for the module (SQLite), whose mail goes to the SMTP server; the tenant
``umbrella`` (starter, sign-ups from umbrella.example wait for an admin) and its people
are added through the tenant store; globex (with gina, an analyst) is the other tenant.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from fedhub.tenancy.store import TenantStore
from tests.conftest import DEMO_PASSWORD, SESSION_GUARD_MARK
from tests.harness import HubProcess
from tests.organisations.hub_helpers import mail_config, smtp_server
from tests.security.signup_mail import Inbox, follow, sign_up

pytestmark = pytest.mark.slow

API = "/hub/api/fedhub/requests"
PEOPLE = {  # name: (tenant, role)
    "ops": (None, "platform-admin"),
    "uma": ("umbrella", "tenant-admin"),
    "umi": ("umbrella", "member"),
    "ula": ("umbrella", "analyst"),
    "gina": ("globex", "analyst"),
}


def mail_of(name: str) -> str:
    return f"{name}@mail.example"


@pytest.fixture(scope="module")
def smtp():
    inbox = Inbox()
    with smtp_server(inbox) as controller:
        yield controller, inbox


@pytest.fixture(scope="module")
def hub(smtp, hub_state_root):
    controller, _ = smtp
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    (state / "jupyterhub_config.py").write_text(mail_config(controller))
    hub = HubProcess(state, password=DEMO_PASSWORD)
    hub.start()
    store = TenantStore(hub.db_url)
    store.create_tenant("umbrella", "Umbrella", "starter", email_domains=["umbrella.example"])
    store.set_signup_policy("umbrella", "admin_approval")
    for name, (tenant, role) in PEOPLE.items():
        store.add_user(name, tenant, role, password=DEMO_PASSWORD, email=mail_of(name))
    yield hub
    hub.stop()
    # mail goes out from a thread; the hub's database session never leaves the event loop
    assert SESSION_GUARD_MARK not in hub.log()


@pytest.fixture(scope="module")
def tokens(hub):
    return {name: hub.token(name) for name in [*PEOPLE, "globex-admin", "bob"]}


@pytest.fixture
def inbox(smtp):
    return smtp[1]


def assert_error(r, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in r.text, body
    return body["error"]["message"]


def ask(hub, token, tier, tenant=None):
    body = {"kind": "tier_change", "payload": {"tier": tier}}
    if tenant:
        body["tenant"] = tenant
    return hub.api("POST", API, token, json=body)


def spooled(hub, action: str) -> list[dict]:
    found = []
    for file in (hub.state_dir / "spool").glob("*.jsonl"):
        found += [json.loads(line) for line in file.read_text().splitlines()]
    return [e for e in found if e["action"] == action]


def read_only_token(hub, name: str) -> str:
    """A token of ``name`` asked for with ``tenant:read`` only (filtered to their tenant)."""
    s = hub.login(name).session
    scope = "custom:fedhub:tenant:read!group=tenant-umbrella"
    r = s.post(f"{hub.url}/hub/api/users/{name}/tokens", json={"scopes": [scope]},
               headers={"X-XSRFToken": s.cookies.get("_xsrf"), "Referer": f"{hub.url}/hub/"},
               timeout=10)  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["token"]


def tier_of(hub, slug: str) -> str:
    return TenantStore(hub.db_url).get_tenant(slug).tier


def test_a_tier_change_asked_approved_applied_audited_and_mailed(hub, tokens, inbox):
    r = ask(hub, tokens["uma"], "professional")
    assert r.status_code == 201, r.text
    req = r.json()
    assert (req["kind"], req["tenant"], req["state"], req["requester"]) == (
        "tier_change", "umbrella", "pending", "uma")  # fmt: skip
    assert req["payload"] == {"tier": "professional", "from": "starter"}
    inbox.wait_message(mail_of("ops"), "uma asks: tier change from starter to professional")
    # one pending per tenant; bad tiers; only the tenant's admin asks; only a platform admin decides
    assert "pending already" in assert_error(ask(hub, tokens["uma"], "enterprise"), 409, "conflict")
    assert "unknown tier" in assert_error(ask(hub, tokens["uma"], "gold"), 400, "invalid_request")
    assert_error(ask(hub, tokens["umi"], "free"), 403, "forbidden")
    assert_error(ask(hub, tokens["ula"], "free"), 403, "forbidden")
    url = f"{API}/{req['id']}"
    assert_error(hub.api("POST", url + "/approve", tokens["uma"], json={}), 403, "forbidden")
    assert tier_of(hub, "umbrella") == "starter"
    r = hub.api("POST", url + "/approve", tokens["ops"], json={"reason": "enjoy the GPUs"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["decided_by"]) == ("approved", "ops")
    assert tier_of(hub, "umbrella") == "professional"
    inbox.wait_message(mail_of("uma"), "Reason: enjoy the GPUs")
    [done] = [m for m in inbox.to(mail_of("uma")) if "is approved" in m["Subject"]]
    assert f"#{req['id']}" in done["Subject"]
    assert "already" in assert_error(
        hub.api("POST", url + "/reject", tokens["ops"], json={"reason": "no"}), 409, "conflict"
    )
    for action in ("request.created", "request.approved"):
        [event] = [e for e in spooled(hub, action) if e["target"] == f"request:{req['id']}"]
        assert event["tenant"] == "umbrella" and event["source_ip"] == "127.0.0.1", event
    assert [e["actor"] for e in spooled(hub, "tenant.tier_changed")
            if e["tenant"] == "umbrella"] == ["ops"]  # fmt: skip


def test_rejection_with_comments_and_the_reason_mailed(hub, tokens, inbox):
    r = ask(hub, tokens["uma"], "enterprise")
    assert r.status_code == 201, r.text
    url = f"{API}/{r.json()['id']}"
    r = hub.api("POST", url + "/comments", tokens["uma"], json={"text": "for the Q1 pilot"})
    assert r.status_code == 201, r.text
    hub.api("POST", url + "/comments", tokens["ops"], json={"text": "how many GPUs?"})
    r = hub.api("GET", url, tokens["uma"])
    assert [(c["author"], c["text"]) for c in r.json()["comments"]] == [
        ("uma", "for the Q1 pilot"), ("ops", "how many GPUs?")]  # fmt: skip
    msg = assert_error(hub.api("POST", url + "/reject", tokens["ops"], json={}), 400,
                       "invalid_request")  # fmt: skip
    assert "reason" in msg
    r = hub.api(
        "POST", url + "/reject", tokens["ops"], json={"reason": "enterprise needs a contract"}
    )
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    inbox.wait_message(mail_of("uma"), "Reason: enterprise needs a contract")
    assert tier_of(hub, "umbrella") == "professional"
    # listed with filters, newest first
    r = hub.api("GET", API + "?state=rejected&kind=tier_change", tokens["uma"])
    assert [q["id"] for q in r.json()["requests"]] == [int(url.rsplit("/", 1)[1])]
    assert_error(hub.api("GET", API + "?state=maybe", tokens["uma"]), 400, "invalid_request")


def test_another_tenant_and_colleagues_are_refused_on_every_endpoint(hub, tokens):
    r = ask(hub, tokens["uma"], "starter")  # umbrella is on professional now
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    url = f"{API}/{rid}"
    calls = [
        ("GET", url, None),
        ("POST", url + "/approve", {}),
        ("POST", url + "/reject", {"reason": "no"}),
        ("POST", url + "/withdraw", {}),
        ("POST", url + "/comments", {"text": "hello"}),
    ]
    # another tenant's admin, member and analyst: as if the request did not exist
    for other in ("globex-admin", "bob", "gina"):
        for method, path, body in calls:
            r = hub.api(method, path, tokens[other], json=body)
            assert_error(r, 404, "not_found")
            assert "umbrella" not in r.text
        listed = hub.api("GET", API, tokens[other]).json()["requests"]
        assert all(q["tenant"] != "umbrella" for q in listed), listed
        assert_error(hub.api("GET", API + "?tenant=umbrella", tokens[other]), 404, "not_found")
        assert_error(ask(hub, tokens[other], "free", tenant="umbrella"), 404, "not_found")
    # the tenant's own member and analyst: a colleague's request is not theirs to see
    for colleague in ("umi", "ula"):
        for method, path, body in calls:
            assert_error(hub.api(method, path, tokens[colleague], json=body), 404, "not_found")
        assert hub.api("GET", API, tokens[colleague]).json()["requests"] == []
    assert_error(hub.api("GET", url), 403, "forbidden")  # no token at all
    # still pending, and its requester withdraws it (a platform admin may not)
    assert_error(hub.api("POST", url + "/withdraw", tokens["ops"], json={}), 403, "forbidden")
    r = hub.api("POST", url + "/withdraw", tokens["uma"], json={})
    assert r.status_code == 200 and r.json()["state"] == "withdrawn", r.text
    assert [e["actor"] for e in spooled(hub, "request.withdrawn")
            if e["target"] == f"request:{rid}"] == ["uma"]  # fmt: skip


@pytest.mark.parametrize(
    "body, words",
    [
        ("not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"kind": "nope", "payload": {}}, "unknown request kind"),
        ({"kind": "join_tenant", "payload": {}}, "not made through this API"),
        ({"kind": "tier_change", "payload": "gold"}, "payload"),
        ({"kind": "tier_change", "payload": {"tier": "gold"}, "extra": 1}, "unknown field"),
        ({"kind": "tier_change", "tenant": 7, "payload": {"tier": "free"}}, "tenant"),
    ],
)
def test_bad_requests_are_400s_in_fedhubs_shape(hub, tokens, body, words):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    r = hub.api("POST", API, tokens["uma"], **kwargs)
    assert words in assert_error(r, 400, "invalid_request")


def test_a_sign_up_awaiting_approval_is_a_join_tenant_request(hub, tokens, inbox):
    r = sign_up(hub, username="ursula", email="ursula@umbrella.example",
                password="Umbrella-signup-pw-1")  # fmt: skip
    assert r.status_code == 200, r.text
    r = follow(inbox.wait_link("ursula@umbrella.example"), "Umbrella-signup-pw-1")
    assert r.status_code == 200, r.text
    inbox.wait_message(mail_of("uma"), "ursula <ursula@umbrella.example> asks to join")
    [req] = [q for q in hub.api("GET", API + "?kind=join_tenant", tokens["uma"]).json()["requests"]
             if q["requester"] == "ursula"]  # fmt: skip
    assert req["state"] == "pending" and req["approver"] == "tenant"
    assert hub.login("ursula", "Umbrella-signup-pw-1").status_code == 403
    assert_error(hub.api("GET", f"{API}/{req['id']}", tokens["globex-admin"]), 404, "not_found")
    # uma's token made to read only: it sees the request and may not decide it
    reader = read_only_token(hub, "uma")
    assert hub.api("GET", f"{API}/{req['id']}", reader).status_code == 200
    r = hub.api("POST", f"{API}/{req['id']}/approve", reader, json={})
    assert "custom:fedhub:tenant:admin" in assert_error(r, 403, "forbidden")
    r = hub.api("POST", f"{API}/{req['id']}/approve", tokens["uma"], json={})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    inbox.wait_message("ursula@umbrella.example", "was approved by uma")
    assert hub.login("ursula", "Umbrella-signup-pw-1").status_code == 302
    assert TenantStore(hub.db_url).user("ursula").tenant == "umbrella"


def test_the_cli_lists_shows_approves_and_rejects(hub, tokens, inbox):
    """``fedhub requests`` in this process (click's runner) against the hub's database."""
    from click.testing import CliRunner

    from fedhub.cli import main

    def cli(*args):
        where = ["--db-url", hub.db_url, "--state-dir", str(hub.state_dir)]
        return CliRunner().invoke(main, [*where, "requests", *args])

    rid = ask(hub, tokens["globex-admin"], "professional").json()["id"]
    listed = json.loads(cli("list", "--state", "pending", "--json").output)
    assert rid in [q["id"] for q in listed]
    shown = cli("show", str(rid)).output
    assert "tier change from starter to professional" in shown and "globex-admin" in shown
    r = cli("approve", str(rid), "--reason", "ok from ops")
    assert r.exit_code == 0 and f"Request {rid} approved" in r.output, r.output
    assert tier_of(hub, "globex") == "professional"
    r = cli("reject", str(rid), "--reason", "late")
    assert r.exit_code == 1 and "approved already" in r.output and "Traceback" not in r.output
    r = cli("show", "999999")
    assert r.exit_code == 1 and "no request 999999" in r.output
    r = hub.api("GET", f"{API}/{rid}", tokens["globex-admin"])
    assert r.json()["state"] == "approved" and r.json()["decided_by"].startswith("cli:")
