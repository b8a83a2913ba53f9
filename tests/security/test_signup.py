"""Sign-up that proves the address (issue 10, route 4), against real hubs.

A real SMTP server runs in this process (aiosmtpd); the hub sends through it as
an operator would configure it (``c.Mailer.*`` in ``<state>/jupyterhub_config.py``,
the embedded deployment's local overrides), and the tests follow the link from
the message they receive. Before the fix, ``mallory@acme.example`` signed up,
logged in and read acme's experiments, and OIDC placed any unverified address in
the tenant of its domain.
"""

from __future__ import annotations

import email
import html
import re
import sqlite3
import stat
import tempfile
import threading
from email import policy
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller

from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, free_port, wait_for

pytestmark = pytest.mark.slow

EXPERIMENTS = "/services/experiments/api/v1/experiments"
LINK_RE = re.compile(r"https?://[^\s\"'<>]+/hub/signup/verify\?token=[A-Za-z0-9_\-]+")


# -- an SMTP server in this process -------------------------------------------------


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


def link_in(msg: email.message.EmailMessage) -> str:
    text = msg.get_body(preferencelist=("plain",)).get_content()
    match = LINK_RE.search(text)
    assert match, f"no verification link in:\n{text}"
    return match.group(0)


@pytest.fixture(scope="module")
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture(scope="module")
def smtp_hub(smtp, hub_state_root):
    """A demo hub whose mail goes to the in-process SMTP server (config file in its state)."""
    controller, _ = smtp
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    (state / "jupyterhub_config.py").write_text(
        "c = get_config()  # noqa\n"
        f"c.Mailer.smtp_host = {controller.hostname!r}\n"
        f"c.Mailer.smtp_port = {controller.port}\n"
        'c.Mailer.smtp_security = "none"\n'
        'c.Mailer.from_address = "fedhub <noreply@hub.example>"\n'
    )
    hub = HubProcess(state, password=DEMO_PASSWORD)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def inbox(smtp):
    return smtp[1]


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


def experiments_status(hub, username: str, password: str) -> int | None:
    """What ``username`` gets from acme's experiments: None if they cannot even log in."""
    r = hub.login(username, password)
    if r.status_code != 302:
        return None
    token = hub.token(username, password)
    return hub.api("GET", EXPERIMENTS, token).status_code


def sql(hub, query: str, *args):
    with sqlite3.connect(hub.db_url.removeprefix("sqlite:///"), timeout=30) as conn:
        return conn.execute(query, args).fetchall()


# -- the route: sign-up by email domain ----------------------------------------------


def test_domain_sign_up_cannot_log_in_until_the_emailed_link_is_followed(smtp_hub, inbox):
    hub = smtp_hub
    password = "mallory-password-1"
    r = sign_up(hub, username="mallory", email="mallory@acme.example", password=password)
    assert r.status_code == 200, text(r)
    page = text(r)

    # before the link: no login, so no token and nothing of acme's
    status = experiments_status(hub, "mallory", password)
    assert status is None, (
        f"an unverified sign-up logged in and got {status} from acme's experiments"
    )
    r = hub.login("mallory", password)
    assert r.status_code == 403
    assert "confirm your email address first; we sent a link to m***@acme.example" in (
        text(r).lower()
    )
    assert "Check your email" in page and "m***@acme.example" in page
    assert "mallory" not in hub.fedhub("user", "list").stdout
    # a wrong password learns nothing about the request
    r = hub.login("mallory", "not-her-password")
    assert r.status_code == 403 and "m***" not in text(r)

    link = inbox.wait_link("mallory@acme.example")
    assert link.startswith(f"{hub.url}/hub/signup/verify?token=")
    msg = inbox.to("mallory@acme.example")[0]
    assert msg["From"] == "fedhub <noreply@hub.example>"
    # the token is single-use, unguessable and stored only as a hash
    token = link.split("token=", 1)[1]
    assert len(token) >= 40
    assert not sql(hub, "SELECT 1 FROM fedhub_signup_requests WHERE token_hash = ?", token)
    assert token not in hub.log()  # an SMTP server is configured: the link is not logged

    # opening the link changes nothing (mail scanners open links); confirming does
    assert requests.get(link, timeout=10).status_code == 200
    assert hub.login("mallory", password).status_code == 403
    r = follow(link, "not-her-password")  # the link alone is not enough
    assert r.status_code == 403 and "not the password chosen" in text(r)
    r = follow(link, password)
    assert r.status_code == 200, text(r)
    assert "Your email address is confirmed" in text(r)

    assert hub.login("mallory", password).status_code == 302
    assert any(
        line.split()[:3] == ["mallory", "acme", "member"]
        for line in hub.fedhub("user", "list").stdout.splitlines()
    )
    wait_for(
        lambda: experiments_status(hub, "mallory", password) == 200,
        120,
        interval=0.5,
        what="the experiments service to answer a verified member",
    )

    # used once: refused the second time
    r = follow(link, password)
    assert r.status_code == 400 and "not valid" in text(r)


def test_expired_replaced_and_wrong_links_are_refused(smtp_hub, inbox):
    hub = smtp_hub
    password = "olive-password-1"
    assert sign_up(hub, username="olive", email="olive@acme.example", password=password).ok
    first = inbox.wait_link("olive@acme.example")
    # asking again at once is refused (nobody floods a mailbox through us) ...
    r = sign_up(hub, username="olive", email="olive@acme.example", password=password)
    assert r.status_code == 429 and "moments ago" in text(r)
    # ... and later resends: one request per address, and only the newest link works
    sql(hub, "UPDATE fedhub_signup_requests SET sent_at = '2000-01-01 00:00:00'")
    r = sign_up(hub, username="olive", email="olive@acme.example", password=password)
    assert r.ok, text(r)
    second = inbox.wait_link("olive@acme.example", count=2)
    assert first != second
    assert sql(
        hub, "SELECT count(*) FROM fedhub_signup_requests WHERE email = ?", "olive@acme.example"
    ) == [(1,)]
    r = follow(first, password)
    assert r.status_code == 400 and "not valid" in text(r)

    # the newest link, once it has expired
    sql(
        hub,
        "UPDATE fedhub_signup_requests SET expires_at = '2000-01-01 00:00:00' WHERE username = ?",
        "olive",
    )
    r = follow(second, password)
    assert r.status_code == 410 and "expired" in text(r)
    r = hub.login("olive", password)
    assert r.status_code == 403 and "expired" in text(r)

    # made-up and empty tokens: a clear 400, never a 500
    assert follow(f"{hub.url}/hub/signup/verify?token=not-a-real-token").status_code == 400
    assert follow(f"{hub.url}/hub/signup/verify").status_code == 400


def test_a_request_replaced_by_someone_else_cannot_be_confirmed_for_them(smtp_hub, inbox):
    """Mallet asks again with quinn's address and his own username and password: quinn's
    newest link would then make mallet's account. Confirming needs the sign-up password,
    which quinn does not know, so it makes nothing."""
    hub = smtp_hub
    assert sign_up(hub, username="quinn", email="quinn@acme.example", password="quinn-pw-1").ok
    inbox.wait_link("quinn@acme.example")
    sql(hub, "UPDATE fedhub_signup_requests SET sent_at = '2000-01-01 00:00:00'")
    assert sign_up(hub, username="mallet", email="quinn@acme.example", password="mallet-pw-1").ok
    newest = inbox.wait_link("quinn@acme.example", count=2)
    r = requests.get(newest, timeout=10)
    assert "mallet" in text(r) and "someone else asked with your address" in text(r)
    for _ in range(5):  # quinn tries her own password
        r = follow(newest, "quinn-pw-1")
    assert r.status_code in (400, 403)
    # after five wrong tries the link is dead, even with mallet's password
    assert follow(newest, "mallet-pw-1").status_code == 400
    assert hub.login("mallet", "mallet-pw-1").status_code == 403
    assert "mallet" not in hub.fedhub("user", "list").stdout


def test_invitation_only_tenant_refuses_domain_sign_up_but_takes_invitations(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "wayne",
        "--tier",
        "starter",
        "--email-domain",
        "wayne.example",
        "--signup-policy",
        "invitation_only",
    )
    r = sign_up(hub, username="bruce", email="bruce@wayne.example", password="bruce-password")
    assert r.status_code == 403
    assert "accepts new members by invitation only" in text(r)
    assert hub.login("bruce", "bruce-password").status_code == 403
    assert not inbox.to("bruce@wayne.example")

    out = hub.fedhub("user", "invite", "bruce@wayne.example", "--tenant", "wayne").stdout
    code = out.split(": ")[1].split()[0]
    r = sign_up(
        hub,
        username="bruce",
        email="bruce@wayne.example",
        password="bruce-password",
        invitation=code,
    )
    assert r.status_code == 200 and "is ready" in text(r)
    assert hub.login("bruce", "bruce-password").status_code == 302
    assert "invitation_only" in hub.fedhub("tenant", "show", "wayne").stdout


def test_admin_approval_waits_for_a_tenant_admin(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "stark",
        "--name",
        "Stark Industries",
        "--tier",
        "starter",
        "--email-domain",
        "stark.example",
    )
    hub.fedhub("tenant", "update", "stark", "--signup-policy", "admin_approval")
    password = "tony-password-1"
    r = sign_up(hub, username="tony", email="tony@stark.example", password=password)
    assert r.status_code == 200 and "Check your email" in text(r)
    # the address first: an admin cannot approve an address nobody has proven
    r = hub.fedhub("user", "approve", "tony", check=False)
    assert r.returncode == 1 and "has not confirmed their email address" in r.stderr

    r = follow(inbox.wait_link("tony@stark.example"), password)
    assert r.status_code == 200
    assert "waiting for an administrator of Stark Industries" in text(r)
    r = hub.login("tony", password)
    assert r.status_code == 403
    assert "waiting for an administrator of Stark Industries" in text(r)
    assert "tony" in hub.fedhub("user", "signups", "--tenant", "stark").stdout

    r = hub.fedhub("user", "approve", "tony")
    assert "Warning" not in r.stderr, r.stderr
    assert hub.login("tony", password).status_code == 302
    # the CLI mails through the same c.Mailer settings (the state dir's config file)
    wait_for(
        lambda: any(
            "approved your sign-up" in m.get_body(preferencelist=("plain",)).get_content()
            for m in inbox.to("tony@stark.example")
        ),
        30,
        what="the approval notice sent by the CLI",
    )
    assert "tony" not in hub.fedhub("user", "signups").stdout

    # and a rejected request never becomes an account
    assert sign_up(hub, username="pepper", email="pepper@stark.example", password=password).ok
    assert follow(inbox.wait_link("pepper@stark.example"), password).ok
    hub.fedhub("user", "reject", "pepper", "--reason", "not an employee")
    r = hub.login("pepper", password)
    assert r.status_code == 403 and "waiting" not in text(r)
    r = hub.fedhub("user", "approve", "pepper", check=False)
    assert r.returncode == 1 and "no sign-up request" in r.stderr


def test_a_tenant_admin_approves_on_the_hub_page(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "oscorp",
        "--name",
        "Oscorp",
        "--tier",
        "starter",
        "--email-domain",
        "oscorp.example",
        "--signup-policy",
        "admin_approval",
    )
    hub.fedhub(
        "user",
        "add",
        "norman",
        "--tenant",
        "oscorp",
        "--role",
        "tenant-admin",
        "--password",
        "norman-password",
    )
    password = "harry-password-1"
    assert sign_up(hub, username="harry", email="harry@oscorp.example", password=password).ok
    assert follow(inbox.wait_link("harry@oscorp.example"), password).ok

    def review(user, user_password=None, **form):
        s = hub.login(user, user_password).session
        if not form:
            return s.get(f"{hub.url}/hub/signup/requests", timeout=10)
        data = {**form, "_xsrf": s.cookies.get("_xsrf")}
        return s.post(f"{hub.url}/hub/signup/requests", data=data, timeout=30)

    # another tenant's admin neither sees nor approves it; a member may not look
    r = review("acme-admin")
    assert r.status_code == 200 and "harry" not in r.text
    r = review("acme-admin", username="harry", action="approve")
    assert r.status_code == 404 and "no sign-up request" in text(r)
    assert review("alice").status_code == 403
    assert hub.login("harry", password).status_code == 403

    r = review("norman", "norman-password")
    assert r.status_code == 200 and "harry@oscorp.example" in r.text
    r = review("norman", "norman-password", username="harry", action="approve")
    assert r.status_code == 200 and "harry is now a member of Oscorp" in text(r)
    assert hub.login("harry", password).status_code == 302
    wait_for(
        lambda: any(
            "approved your sign-up" in m.get_body(preferencelist=("plain",)).get_content()
            for m in inbox.to("harry@oscorp.example")
        ),
        30,
        what="the approval notice",
    )


def test_embedded_default_writes_the_message_to_a_private_outbox(hub):
    """No SMTP server configured: the message is a 0600 file in <state>/outbox, and the
    link is in the hub's log for the operator."""
    r = sign_up(hub, username="oscar", email="oscar@globex.example", password="oscar-password")
    assert r.status_code == 200 and "Check your email" in text(r), text(r)
    outbox = hub.state_dir / "outbox"
    files = wait_for(lambda: list(outbox.glob("*.eml")), 10, what="a message in the outbox")
    try:
        assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
        mine = [
            f
            for f in files
            if email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"]
            == "oscar@globex.example"
        ]
        assert len(mine) == 1
        assert stat.S_IMODE(mine[0].stat().st_mode) == 0o600
        link = link_in(email.message_from_bytes(mine[0].read_bytes(), policy=policy.default))
        wait_for(lambda: link in hub.log(), 10, what="the link in the hub's log")
        assert hub.login("oscar", "oscar-password").status_code == 403
    finally:
        hub.fedhub("user", "reject", "oscar", check=False)  # the shared hub stays tidy


# -- the store on both engines (migration 0007 included) -----------------------------


def test_sign_up_requests_on_both_engines(migrated_db):
    """A request is no account: ``TenantStore.user`` (what the hub and the services ask)
    knows nothing of it until the link is followed (and, under admin_approval, approved)."""
    from fedhub.errors import FedhubError
    from fedhub.tenancy.store import TenantStore

    store = TenantStore(migrated_db)
    store.create_tenant("acme", "Acme", "professional", email_domains=["acme.example"])
    assert store.get_tenant("acme").signup_policy == "verify_email"
    first = store.sign_up("mallory", "Mallory@acme.example", "mallory-password")
    assert first.status == "awaiting_email" and first.token
    assert store.user("mallory") is None
    again = store.sign_up("mallory", "mallory@acme.example", "mallory-password")
    assert again.resent and again.token != first.token
    with pytest.raises(FedhubError, match="not valid"):
        store.verify_signup(first.token, "mallory-password")
    with pytest.raises(FedhubError, match="already exists"):  # the username is held
        store.sign_up("mallory", "someone-else@acme.example", "mallory-password")
    with pytest.raises(FedhubError, match="not the password"):
        store.verify_signup(again.token, "wrong-password")
    assert store.verify_signup(again.token, "mallory-password").active
    assert store.user("mallory").tenant == "acme"
    assert store.pending_signup("mallory") is None

    store.set_signup_policy("acme", "admin_approval")
    nina = store.sign_up("nina", "nina@acme.example", "nina-password")
    assert store.verify_signup(nina.token, "nina-password").status == "awaiting_approval"
    assert store.user("nina") is None
    assert [p.username for p in store.signup_requests("acme")] == ["nina"]
    store.approve_signup("nina", tenant="acme", actor="acme-admin")
    assert store.user("nina").tenant == "acme"

    store.set_signup_policy("acme", "invitation_only")
    with pytest.raises(FedhubError, match="invitation only") as refused:
        store.sign_up("oz", "oz@acme.example", "oz-password-1")
    assert refused.value.status == 403
    with pytest.raises(FedhubError, match="unknown sign-up policy"):
        store.set_signup_policy("acme", "anyone")
    with pytest.raises(FedhubError, match="invalid email address") as bad:  # not a 500
        store.sign_up("long", "x" * 400 + "@acme.example", "long-password")
    assert bad.value.status == 400


def test_mailer_outbox_and_errors_keep_secrets(tmp_path):
    """The outbox file is private, and a failed SMTP conversation never shows the password."""
    from fedhub.mail import Mailer, MailError

    outbox = Mailer(outbox_dir=str(tmp_path / "outbox"), from_address="fedhub@hub.example")
    outbox.send("someone@acme.example", "Hello", "plain text", "<p>html</p>")
    (path,) = (tmp_path / "outbox").glob("*.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert msg["To"] == "someone@acme.example" and msg.is_multipart()

    unreachable = Mailer(
        smtp_host="127.0.0.1",
        smtp_port=free_port(),  # nobody listens
        smtp_security="none",
        smtp_username="fedhub",
        smtp_password="s3cret-smtp-password",
        smtp_timeout=5,
    )
    with pytest.raises(MailError) as failed:
        unreachable.send("someone@acme.example", "Hello", "text")
    assert "s3cret" not in str(failed.value)
    with pytest.raises(MailError, match="not an email address"):
        outbox.send("someone@acme.example\r\nBcc: all@acme.example", "Hello", "text")
