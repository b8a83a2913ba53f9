"""What the sign-up tests (``test_signup.py``, ``test_signup_approval.py``) do as
a person would: read the mail the in-process SMTP server received (the fixtures
are in ``conftest.py``), fill in the sign-up form, follow the emailed link."""

from __future__ import annotations

import email
import html
import re
import sqlite3
import threading
from email import policy

import requests

from tests.harness import wait_for

LINK_RE = re.compile(r"https?://[^\s\"'<>]+/hub/signup/verify\?token=[A-Za-z0-9_\-]+")


# -- the mailbox ----------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append(msg)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def wait_link(self, address: str, count: int = 1, timeout: float = 30) -> str:
        """The link in the ``count``-th message sent to ``address``."""
        msgs = wait_for(
            lambda: (found := self.to(address)) and len(found) >= count and found,
            timeout,
            what=f"message {count} to {address}",
        )
        return link_in(msgs[count - 1])

    def wait_message(self, address: str, words: str, timeout: float = 30) -> None:
        """Wait until a plain-text message to ``address`` says ``words``."""
        wait_for(
            lambda: any(
                words in m.get_body(preferencelist=("plain",)).get_content()
                for m in self.to(address)
            ),
            timeout,
            what=f"a message to {address} saying {words!r}",
        )


def link_in(msg: email.message.EmailMessage) -> str:
    text = msg.get_body(preferencelist=("plain",)).get_content()
    match = LINK_RE.search(text)
    assert match, f"no verification link in:\n{text}"
    return match.group(0)


# -- helpers ------------------------------------------------------------------------


def sign_up(hub, **form) -> requests.Response:
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup", timeout=10)
    return s.post(
        f"{hub.url}/hub/signup", data={**form, "_xsrf": s.cookies.get("_xsrf")}, timeout=30
    )


def follow(link: str, password: str = "") -> requests.Response:
    """Open the link as a browser would, type the sign-up password and press confirm."""
    s = requests.Session()
    r = s.get(link, timeout=10)
    if r.status_code != 200:
        return r
    token = re.search(r'name="token" value="([^"]+)"', r.text).group(1)
    action = link.split("?", 1)[0]
    data = {"token": token, "password": password, "_xsrf": s.cookies.get("_xsrf")}
    return s.post(action, data=data, timeout=30)


def text(r: requests.Response) -> str:
    return " ".join(html.unescape(r.text).split())


def sql(hub, query: str, *args):
    with sqlite3.connect(hub.db_url.removeprefix("sqlite:///"), timeout=30) as conn:
        return conn.execute(query, args).fetchall()
