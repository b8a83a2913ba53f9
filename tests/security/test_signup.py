"""Sign-up that proves the address (issue 10, route 4), against real hubs.

A real SMTP server runs in this process (aiosmtpd, see ``signup_mail.py``); the
tests follow the link from the message they receive. Before the fix,
``mallory@acme.example`` signed up, logged in and read acme's experiments, and
OIDC placed any unverified address in the tenant of its domain. The tenant
policies (invitation only, admin approval) are in ``test_signup_approval.py``.
"""

from __future__ import annotations

import email
import stat
from email import policy

import pytest
import requests

from tests.harness import free_port, wait_for
from tests.security.signup_mail import follow, link_in, sign_up, sql, text

pytestmark = pytest.mark.slow

EXPERIMENTS = "/services/experiments/api/v1/experiments"


def experiments_status(hub, username: str, password: str) -> int | None:
    """What ``username`` gets from acme's experiments: None if they cannot even log in."""
    r = hub.login(username, password)
    if r.status_code != 302:
        return None
    token = hub.token(username, password)
    return hub.api("GET", EXPERIMENTS, token).status_code


# -- the route: sign-up by email domain ----------------------------------------------


def test_domain_sign_up_cannot_log_in_until_the_emailed_link_is_followed(smtp_hub, inbox):
    hub = smtp_hub
    password = "Acme-signup-pass-1"
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
    password = "Green-tree-grove-9"
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
    assert sign_up(
        hub, username="quinn", email="quinn@acme.example", password="First-choice-pw-1"
    ).ok
    inbox.wait_link("quinn@acme.example")
    sql(hub, "UPDATE fedhub_signup_requests SET sent_at = '2000-01-01 00:00:00'")
    assert sign_up(
        hub, username="mallet", email="quinn@acme.example", password="Second-choice-pw-2"
    ).ok
    newest = inbox.wait_link("quinn@acme.example", count=2)
    r = requests.get(newest, timeout=10)
    assert "mallet" in text(r) and "someone else asked with your address" in text(r)
    for _ in range(5):  # quinn tries her own password
        r = follow(newest, "First-choice-pw-1")
    assert r.status_code in (400, 403)
    # after five wrong tries the link is dead, even with mallet's password
    assert follow(newest, "Second-choice-pw-2").status_code == 400
    assert hub.login("mallet", "Second-choice-pw-2").status_code == 403
    assert "mallet" not in hub.fedhub("user", "list").stdout


# -- where the message goes -------------------------------------------------------


def test_embedded_default_writes_the_message_to_a_private_outbox(hub):
    """No SMTP server configured: the message is a 0600 file in <state>/outbox, and the
    link is in the hub's log for the operator."""
    r = sign_up(hub, username="oscar", email="oscar@globex.example", password="Globex-signup-pw-1")
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
        assert hub.login("oscar", "Globex-signup-pw-1").status_code == 403
    finally:
        hub.fedhub("user", "reject", "oscar", check=False)  # the shared hub stays tidy


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
