"""Self-service onboarding (#13) against one real hub, with a real SMTP server in this
process (aiosmtpd): the free tier end to end through the JSON API and through the form,
the emailed link, the new tenant admin's login and server; the paid tiers through a
platform admin's approval or rejection (approvals' API); abuse limits, bad input and
slug collisions. The helpers are in ``onboarding_helpers.py`` and ``hub_helpers.py``; the
tests stay in this one module (one hub).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller

from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, free_port, wait_for
from tests.organisations.hub_helpers import mail_config
from tests.organisations.hub_helpers import spool_events as audit_events
from tests.organisations.onboarding_helpers import (
    ONBOARD,
    REQUESTS,
    ask_paid,
    confirm,
    form_post,
    onboard,
    onboarding_request,
    status_of,
    tenant_row,
    text,
    wait_link,
)
from tests.security.signup_mail import Inbox, sql

pytestmark = pytest.mark.slow

PER_IP = 8  # c.Onboarding.requests_per_ip_per_hour of this module's hub


@pytest.fixture(scope="module")
def inbox():
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.controller = controller
    yield box
    box.controller.stop()


@pytest.fixture(scope="module")
def hub(inbox, hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    extra = (
        f"c.Onboarding.requests_per_ip_per_hour = {PER_IP}\n"
        # as behind a load balancer on this machine: X-Forwarded-For names the client
        'c.JupyterHub.trusted_downstream_ips = ["127.0.0.1"]\n'
    )
    (state / "jupyterhub_config.py").write_text(mail_config(inbox.controller, extra))
    hub = HubProcess(state, password=DEMO_PASSWORD)
    hub.start()
    yield hub
    hub.stop()


# -- the free tier, end to end ------------------------------------------------------


def test_free_onboarding_through_the_api_then_login_and_a_server(hub, inbox):
    password = "Rivet-works-pass-7"
    r = onboard(
        hub,
        organisation="Rivet Works",
        email="Founder@Rivet.example",
        username="rivet-founder",
        password=password,
        tier="free",
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["onboarding"] == {
        "organisation": "Rivet Works",
        "slug": "rivet-works",
        "tier": "free",
        "username": "rivet-founder",
        "state": "awaiting_email",
        "paid": False,
        "reason": None,
    }
    assert "f***@rivet.example" in body["message"] and "token" not in r.text
    # nothing exists before the link: no tenant, no login
    assert tenant_row(hub, "rivet-works") is None
    assert hub.login("rivet-founder", password).status_code == 403

    link = wait_link(inbox, "founder@rivet.example")
    assert link.startswith(f"{hub.url}/hub/onboard/verify?token=")  # the hub's own URL
    token = link.split("token=", 1)[1]
    assert len(token) >= 40
    stored = sql(hub, "SELECT token_hash FROM fedhub_onboardings WHERE slug = 'rivet-works'")
    assert stored and stored[0][0] != token and len(stored[0][0]) == 64  # its SHA-256 only
    # opening the link changes nothing (mail scanners open links)
    assert requests.get(link, timeout=10).status_code == 200
    assert tenant_row(hub, "rivet-works") is None
    r = confirm(link, "not-the-password")
    assert r.status_code == 403 and "not the password chosen" in text(r)
    r = confirm(link, password)
    assert r.status_code == 200, text(r)
    assert "Rivet Works exists" in text(r) and "Log in" in text(r)
    slug = "rivet-works"
    assert tenant_row(hub, slug) == ("Rivet Works", "free", "active")
    assert sql(
        hub, "SELECT role, email FROM fedhub_memberships WHERE username = 'rivet-founder'"
    ) == [("tenant-admin", "founder@rivet.example")]
    # the link is spent: it shows the status now
    r = requests.get(link, timeout=10)
    assert r.status_code == 200 and "Rivet Works exists" in text(r)
    assert 'name="password"' not in r.text  # no confirm form any more

    # the new admin logs in with the password chosen and reaches their own server
    token = hub.token("rivet-founder", password)
    me = hub.api("GET", "/hub/api/user", token).json()
    assert "tenant-rivet-works" in me["groups"]
    r = hub.api("GET", "/hub/api/fedhub/tenants/rivet-works/branding", token)
    assert r.status_code == 200, r.text  # a tenant endpoint: they are its admin
    r = hub.api("POST", "/hub/api/users/rivet-founder/server", token)
    assert r.status_code in (201, 202), r.text
    try:
        wait_for(
            lambda: hub.api("GET", "/hub/api/users/rivet-founder", token).json()["servers"][""][
                "ready"
            ],
            60,
            what="rivet-founder's server",
        )
        r = requests.get(
            f"{hub.url}/user/rivet-founder/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
    finally:
        hub.api("DELETE", "/hub/api/users/rivet-founder/server", token)

    asked = [e for e in audit_events(hub, "tenant.onboarding_requested") if e["target"] == slug]
    assert asked and asked[0]["tenant"] is None and asked[0]["details"]["tier"] == "free"
    assert asked[0]["source_ip"].startswith("198.51.100.")
    done = [e for e in audit_events(hub, "tenant.onboarded") if e["tenant"] == slug]
    assert [(e["actor"], e["details"]["admin"], e["details"]["how"]) for e in done] == [
        ("rivet-founder", "rivet-founder", "free_tier")
    ]


def test_free_onboarding_through_the_form(hub, inbox):
    password = "Quill-house-pass-3"
    form = {
        "organisation": "Quill House",
        "email": "ink@quill.example",
        "username": "quill-admin",
        "password": password,
        "tier": "free",
    }
    r = form_post(hub, "/hub/onboard", form, "198.51.100.200")
    assert r.status_code == 200, text(r)
    assert "Check your email" in text(r) and "i***@quill.example" in text(r)
    r = confirm(wait_link(inbox, "ink@quill.example"), password)
    assert r.status_code == 200 and "Quill House exists" in text(r)
    assert hub.login("quill-admin", password).status_code == 302
    assert tenant_row(hub, "quill-house") == ("Quill House", "free", "active")


def test_the_form_offers_the_tiers_of_tiers_yaml(hub):
    r = requests.get(f"{hub.url}/hub/onboard", timeout=10)
    assert r.status_code == 200
    offered = re.findall(r'<option value="([a-z]+)"', r.text)
    assert offered == ["free", "starter", "professional", "enterprise"]


# -- abuse limits ---------------------------------------------------------------------


def test_one_pending_onboarding_per_email(hub, inbox):
    ask = dict(email="twice@pending.example", password="Pending-pass-12", tier="free")
    r = onboard(hub, organisation="Pending One", username="pending-one", **ask)
    assert r.status_code == 202, r.text
    r = onboard(hub, organisation="Pending Two", username="pending-two", **ask)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "onboarding_pending"
    assert len(inbox.to("twice@pending.example")) == 1  # no second mail to the address


def test_taken_usernames_and_addresses_are_refused(hub):
    base = dict(organisation="Taken", password="Taken-pass-1234", tier="free")
    # a demo account's username, and a demo account's address
    r = onboard(hub, email="new@taken.example", username="alice", **base)
    assert r.status_code == 409 and "alice" in r.json()["error"]["message"]
    hub.fedhub("user", "add", "has-mail", "--tenant", "globex", "--email", "mine@taken.example")
    r = onboard(hub, email="Mine@Taken.example", username="fresh-name", **base)
    assert r.status_code == 409 and "belongs to an account" in r.json()["error"]["message"]
    # a username another pending onboarding holds
    r = onboard(hub, email="holder@taken.example", username="held-name", **base)
    assert r.status_code == 202
    r = onboard(hub, email="other@taken.example", username="held-name", **base)
    assert r.status_code == 409 and "held-name" in r.json()["error"]["message"]


def test_an_address_a_client_names_itself_is_not_believed(hub):
    # X-Real-Ip passes the proxy as the client wrote it: each request naming another address
    # there still counts against the one the proxy saw (fedhub.addresses.client_ip)
    codes = [
        onboard(
            hub,
            "203.0.113.90",
            headers={"X-Real-Ip": f"192.0.2.{i + 1}"},
            organisation=f"Spoof {i}",
            email=f"spoof{i}@spoof.example",
            username=f"spoof-{i}",
            password="Spoof-pass-12345",
            tier="free",
        ).status_code
        for i in range(PER_IP + 1)
    ]
    assert codes == [202] * PER_IP + [429]


def test_requests_from_one_address_are_rate_limited(hub):
    ip = "203.0.113.77"
    codes = [
        onboard(
            hub,
            ip,
            organisation=f"Flood {i}",
            email=f"flood{i}@flood.example",
            username=f"flood-{i}",
            password="Flood-pass-12345",
            tier="free",
        )
        for i in range(PER_IP + 1)
    ]
    assert [r.status_code for r in codes[:PER_IP]] == [202] * PER_IP
    last = codes[PER_IP]
    assert last.status_code == 429, last.text
    assert last.json()["error"]["code"] == "rate_limited" and int(last.headers["Retry-After"]) > 0
    # another address is not held back by this one
    r = onboard(
        hub,
        "203.0.113.78",
        company="Not flooded",  # the seed's names (POST /api/v1/onboard) work too
        admin_email="calm@flood.example",
        username="calm",
        password="Quiet-pass-123456",
        tier="free",
    )
    assert r.status_code == 202, r.text


# -- bad input ------------------------------------------------------------------------

GOOD = dict(
    organisation="Bad Input",
    email="bad@input.example",
    username="bad-input",
    password="Bad-input-pass-1",
    tier="free",
)


@pytest.mark.parametrize(
    "change, status, code",
    [
        ({"tier": "platinum"}, 400, "unknown_tier"),
        ({"tier": 3}, 400, "invalid_request"),
        ({"organisation": ""}, 400, "invalid_request"),
        ({"organisation": "x" * 101}, 400, "invalid_request"),
        ({"email": "not-an-address"}, 400, "invalid_request"),
        ({"username": "Bad Name!"}, 400, "invalid_request"),
        ({"password": "short"}, 400, "invalid_request"),
        ({"password": "bad-input-Pass-1"}, 400, "password_policy"),  # holds the username
        ({"password": None}, 400, "invalid_request"),
    ],
)
def test_bad_input_is_a_json_400(hub, change, status, code):
    r = onboard(hub, **{**GOOD, **change})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"a string"'])
def test_a_body_that_is_not_a_json_object_is_a_400(hub, body):
    r = hub.api("POST", ONBOARD, data=body, headers={"X-Forwarded-For": "198.51.100.250"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_bad_and_spent_links(hub):
    r = requests.get(f"{hub.url}/hub/onboard/verify?token=nope", timeout=10)
    assert r.status_code == 400 and "not valid" in text(r)
    r = hub.api("POST", f"{ONBOARD}/verify", json={"token": "nope", "password": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = hub.api("POST", f"{ONBOARD}/verify", json={"token": 1})
    assert r.status_code == 400
    r = hub.api("GET", f"{ONBOARD}/status?token=nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# -- slugs ----------------------------------------------------------------------------


def test_slugs_are_derived_and_unique(hub, inbox):
    # "Acme Corporation" is not taken, "acme" is (a demo tenant); the derived slugs
    # skip tenants and the slugs pending onboardings reserved
    names = ["ACME", "Acme!", "  acme  ", "Ünïcödé Café & Co.", "!!!"]
    slugs = []
    for i, name in enumerate(names):
        r = onboard(
            hub,
            organisation=name,
            email=f"slug{i}@slugs.example",
            username=f"slug-{i}",
            password="Slug-pass-123456",
            tier="free",
        )
        assert r.status_code == 202, r.text
        slugs.append(r.json()["onboarding"]["slug"])
    assert slugs == ["acme-2", "acme-3", "acme-4", "unicode-cafe-co", "org"]
    # a slug taken after the request (an operator's `fedhub tenant create`) is derived
    # again when the tenant is founded
    hub.fedhub("tenant", "create", "acme-2", "--tier", "free")
    r = confirm(wait_link(inbox, "slug0@slugs.example"), "Slug-pass-123456")
    assert r.status_code == 200, text(r)
    assert sql(hub, "SELECT slug FROM fedhub_tenants WHERE name = 'ACME'") == [("acme-5",)]


# -- paid tiers: a platform admin decides ---------------------------------------------


def test_paid_onboarding_is_approved_by_a_platform_admin(hub, inbox):
    email = "cfo@orbital.example"
    link = ask_paid(
        hub, inbox, organisation="Orbital Freight", email=email, username="orbital-cfo",
        tier="starter",
    )  # fmt: skip
    # confirmed, but nothing exists until the decision
    assert tenant_row(hub, "orbital-freight") is None
    assert hub.login("orbital-cfo", "Paid-tier-pass-42").status_code == 403
    assert status_of(hub, link)["state"] == "awaiting_approval"
    request = onboarding_request(hub, email)
    assert request["tenant"] is None and request["approver"] == "platform"
    assert request["payload"]["slug"] == "orbital-freight"
    assert request["payload"]["tier"] == "starter"

    # another tenant's admin neither sees nor decides it
    other = hub.token("acme-admin")
    assert hub.api("GET", f"{REQUESTS}/{request['id']}", other).status_code == 404
    r = hub.api("POST", f"{REQUESTS}/{request['id']}/approve", other, json={})
    assert r.status_code == 404, r.text

    r = hub.api(
        "POST", f"{REQUESTS}/{request['id']}/approve", hub.token("admin"), json={"reason": "ok"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved" and r.json()["tenant"] == "orbital-freight"
    assert tenant_row(hub, "orbital-freight") == ("Orbital Freight", "starter", "active")
    assert sql(
        hub, "SELECT tier FROM fedhub_billing_subscriptions WHERE tenant = 'orbital-freight'"
    ) == [("starter",)]  # billing charges the tier from today
    inbox.wait_message(email, "approved")
    assert status_of(hub, link)["state"] == "onboarded"
    assert "Orbital Freight exists" in text(requests.get(link, timeout=10))
    # the new admin logs in with the password chosen at the start
    token = hub.token("orbital-cfo", "Paid-tier-pass-42")
    me = hub.api("GET", "/hub/api/user", token).json()
    assert "tenant-orbital-freight" in me["groups"]
    done = [e for e in audit_events(hub, "tenant.onboarded") if e["tenant"] == "orbital-freight"]
    assert [(e["actor"], e["details"]["how"]) for e in done] == [("admin", "approval")]
    approved = [
        e
        for e in audit_events(hub, "request.approved")
        if e["target"] == f"request:{request['id']}"
    ]
    assert approved and approved[0]["tenant"] == "orbital-freight"


def test_rejected_onboarding_shows_the_reason(hub, inbox):
    email = "boss@shady.example"
    link = ask_paid(
        hub, inbox, organisation="Shady Ltd", email=email, username="shady-boss",
        tier="professional",
    )  # fmt: skip
    request = onboarding_request(hub, email)
    admin = hub.token("admin")
    r = hub.api("POST", f"{REQUESTS}/{request['id']}/reject", admin, json={})
    assert r.status_code == 400, r.text  # a rejection needs its reason
    reason = "We could not confirm that Shady Ltd is a registered company."
    r = hub.api("POST", f"{REQUESTS}/{request['id']}/reject", admin, json={"reason": reason})
    assert r.status_code == 200, r.text
    assert tenant_row(hub, "shady-ltd") is None
    assert status_of(hub, link) == {
        "organisation": "Shady Ltd",
        "slug": "shady-ltd",
        "tier": "professional",
        "username": "shady-boss",
        "state": "rejected",
        "paid": True,
        "reason": reason,
    }
    page = requests.get(link.replace("/verify?", "/status?"), timeout=10)
    assert page.status_code == 200 and reason in text(page) and "not approved" in text(page)
    inbox.wait_message(email, reason)
    # the password is not kept; the address may ask again
    assert sql(hub, "SELECT password_hash FROM fedhub_onboardings WHERE slug = 'shady-ltd'") == [
        ("",)
    ]
    r = onboard(
        hub, organisation="Shady Ltd", email=email, username="shady-boss",
        password="Second-try-pass-9", tier="free",
    )  # fmt: skip
    assert r.status_code == 202, r.text


def test_an_approval_that_cannot_be_applied_stays_pending(hub, inbox):
    email = "lead@late.example"
    ask_paid(hub, inbox, organisation="Late Co", email=email, username="late-lead", tier="starter")
    request = onboarding_request(hub, email)
    # the username is given to someone else meanwhile (an operator at the CLI)
    hub.fedhub("user", "add", "late-lead", "--tenant", "initech")
    admin = hub.token("admin")
    r = hub.api("POST", f"{REQUESTS}/{request['id']}/approve", admin, json={})
    assert r.status_code == 409, r.text
    assert "late-lead" in r.json()["error"]["message"]
    assert onboarding_request(hub, email)["state"] == "pending"
    assert tenant_row(hub, "late-co") is None


# -- last: the SMTP server goes away --------------------------------------------------


def test_a_link_that_cannot_be_sent_keeps_nothing(hub, inbox):
    ask = dict(
        organisation="Mailless", email="no@mail.example", username="mailless",
        password="Unsent-pass-12345", tier="free",
    )  # fmt: skip
    inbox.controller.stop()
    try:
        for _ in range(2):  # asking again is a 503 again, not a 409: nothing was kept
            r = onboard(hub, **ask)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "mail_not_sent"
        assert not sql(hub, "SELECT 1 FROM fedhub_onboardings WHERE email = 'no@mail.example'")
    finally:  # the same server again, on the same port (a stopped one cannot restart)
        stopped = inbox.controller
        inbox.controller = Controller(inbox, hostname=stopped.hostname, port=stopped.port)
        inbox.controller.start()
    assert onboard(hub, **ask).status_code == 202


def test_the_login_page_links_to_what_is_offered(hub):
    page = hub.api("GET", "/hub/login")
    assert page.status_code == 200
    links = re.search(r'<p id="fedhub-no-account".*?</p>', page.text, re.S).group(0)
    assert 'href="/hub/onboard"' in links
    # the sign-up link only where the hub offers sign-up
    offers_signup = hub.api("GET", "/hub/signup").status_code == 200
    assert ('href="/hub/signup"' in links) == offers_signup
