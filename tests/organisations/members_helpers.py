"""Helpers of ``test_members.py``: the SMTP handler that refuses a mailbox, calls of the
tenancy API as one of the demo's people, the fedhub error body of a refusal, inviting someone
and following the emailed link through the sign-up form."""

from __future__ import annotations

import re

import requests
from sqlalchemy import create_engine
from sqlalchemy import text as sql_text

from fedhub.tenancy.store import TenantStore
from tests.security.signup_mail import Inbox
from tests.security.signup_mail import text as page_text

TENANTS = "/hub/api/fedhub/tenants"
INVITE_LINK = re.compile(r"https?://[^\s\"'<>]+/hub/signup\?invitation=[A-Za-z0-9_\-]+")


class Mailbox(Inbox):
    """The in-process SMTP server's handler; it refuses ``@refused.example`` addresses (550),
    as a real server refuses an unknown mailbox."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def text(r: requests.Response) -> str:
    """The page's words, without its tags."""
    return " ".join(re.sub(r"<[^>]+>", " ", page_text(r)).split())


def sql(hub, statement: str, **params) -> list:
    """Run one statement on the hub's database (SQLite or PostgreSQL) as its owner."""
    engine = create_engine(hub.db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sql_text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def add_user(hub, name: str, **kwargs) -> None:
    """An acme member made as ``fedhub user add`` makes one (the same store call, in this
    process: a CLI subprocess costs seconds of imports on a busy machine)."""
    TenantStore(hub.db_url).add_user(name, "acme", actor="tests", **kwargs)


def call(hub, tok, who, method, path, body=None, **kwargs):
    if body is not None:
        kwargs["json"] = body
    return hub.api(method, TENANTS + path, tok[who], **kwargs)


def error(r, status: int, code: str | None = None) -> dict:
    """The fedhub error body of a refusal (never a traceback)."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.text
    err = r.json()["error"]
    assert err["message"] and "Traceback" not in err["message"]
    if code:
        assert err["code"] == code, err
    return err


def invite(hub, tok, email, role="member", who="acme-admin", **extra):
    r = call(hub, tok, who, "POST", "/acme/invitations", {"email": email, "role": role, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def link_to(inbox, address: str, count: int = 1) -> str:
    inbox.wait_message(address, "You are invited to join")
    msgs = inbox.to(address)
    assert len(msgs) >= count
    body = msgs[count - 1].get_body(preferencelist=("plain",)).get_content()
    match = INVITE_LINK.search(body)
    assert match, body
    return match.group(0)


def accept(link: str, username: str, email: str, password: str) -> requests.Response:
    """Open the emailed link, fill in a username and a password, press sign up."""
    s = requests.Session()
    page = s.get(link, timeout=10)
    assert page.status_code == 200, text(page)
    code = re.search(r'name="invitation" value="([^"]*)"', page.text).group(1)
    filled = re.search(r'name="email" type="email" value="([^"]*)"', page.text).group(1)
    assert filled == email  # the invited address comes filled in
    form = {"username": username, "email": filled, "password": password, "invitation": code}
    return s.post(link.split("?", 1)[0], data={**form, "_xsrf": s.cookies.get("_xsrf")}, timeout=30)
