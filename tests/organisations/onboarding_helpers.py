"""Helpers of ``test_onboarding.py``: onboarding through the API from an address of its own,
the emailed link and its confirmation page, the form, the new tenant's row, and a paid
tier's request for a platform admin."""

from __future__ import annotations

import html
import re

import requests

from tests.harness import wait_for
from tests.security.signup_mail import Inbox, sql

ONBOARD = "/hub/api/fedhub/onboard"
LINK_RE = re.compile(r"https?://[^\s\"'<>]+/hub/onboard/verify\?token=[A-Za-z0-9_\-]+")
REQUESTS = "/hub/api/fedhub/requests"


def text(r: requests.Response) -> str:
    """The page's words, without its markup."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", r.text)).split())


_ip = iter(range(1, 250))


def onboard(hub, ip: str | None = None, headers: dict | None = None, **body) -> requests.Response:
    """``POST /hub/api/fedhub/onboard`` from a source address of its own, so that the tests
    do not spend each other's per-address limit: as if through a load balancer in front of
    the proxy that says so in ``X-Forwarded-For`` (the module's hub trusts 127.0.0.1 as
    one: ``c.JupyterHub.trusted_downstream_ips``)."""
    ip = ip or f"198.51.100.{next(_ip)}"
    return hub.api("POST", ONBOARD, json=body, headers={"X-Forwarded-For": ip, **(headers or {})})


def wait_link(inbox: Inbox, address: str) -> str:
    msgs = wait_for(lambda: inbox.to(address), 30, what=f"a message to {address}")
    body = msgs[-1].get_body(preferencelist=("plain",)).get_content()
    match = LINK_RE.search(body)
    assert match, f"no onboarding link in:\n{body}"
    return match.group(0)


def confirm(link: str, password: str) -> requests.Response:
    """Open the link as a browser would, type the password and press confirm."""
    s = requests.Session()
    r = s.get(link, timeout=10)
    assert r.status_code == 200, text(r)
    token = re.search(r'name="token" value="([^"]+)"', r.text).group(1)
    data = {"token": token, "password": password, "_xsrf": s.cookies.get("_xsrf")}
    return s.post(link.split("?", 1)[0], data=data, timeout=30)


def form_post(hub, path: str, data: dict, ip: str) -> requests.Response:
    s = requests.Session()
    s.headers["X-Forwarded-For"] = ip  # the same address for the page and the post (xsrf)
    s.get(f"{hub.url}{path}", timeout=10)
    return s.post(f"{hub.url}{path}", data={**data, "_xsrf": s.cookies.get("_xsrf")}, timeout=30)


def tenant_row(hub, slug: str):
    rows = sql(hub, "SELECT name, tier, status FROM fedhub_tenants WHERE slug = ?", slug)
    return rows[0] if rows else None


def ask_paid(hub, inbox, *, organisation: str, email: str, username: str, tier: str) -> str:
    """Onboard on a paid tier and confirm the address; the link (it shows the status)."""
    r = onboard(
        hub,
        organisation=organisation,
        email=email,
        username=username,
        password="Paid-tier-pass-42",
        tier=tier,
    )
    assert r.status_code == 202, r.text
    assert r.json()["onboarding"]["paid"] is True
    link = wait_link(inbox, email)
    r = confirm(link, "Paid-tier-pass-42")
    assert r.status_code == 200, text(r)
    assert "waiting for a platform administrator" in text(r)
    return link


def onboarding_request(hub, email: str) -> dict:
    r = hub.api("GET", f"{REQUESTS}?kind=onboarding&state=pending", hub.token("admin"))
    assert r.status_code == 200, r.text
    found = [q for q in r.json()["requests"] if q["requester_email"] == email]
    assert len(found) == 1, r.json()
    return found[0]


def status_of(hub, link: str) -> dict:
    token = link.split("token=", 1)[1]
    r = hub.api("GET", f"{ONBOARD}/status?token={token}")
    assert r.status_code == 200, r.text
    return r.json()["onboarding"]
