"""What the organisations' hub tests share: an SMTP server in the test process, the hub
config that sends its mail there, and the audit events the hub wrote to its spool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from aiosmtpd.controller import Controller

from tests.harness import free_port


@contextmanager
def smtp_server(handler) -> Iterator[Controller]:
    """An SMTP server on a free loopback port of this process, delivering to ``handler``
    (an :class:`~tests.security.signup_mail.Inbox`); stopped on leaving."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def mail_config(controller, extra: str = "") -> str:
    """A hub config whose Mailer sends to ``controller`` (an aiosmtpd Controller)."""
    return (
        "c = get_config()  # noqa\n"
        f"c.Mailer.smtp_host = {controller.hostname!r}\n"
        f"c.Mailer.smtp_port = {controller.port}\n"
        'c.Mailer.smtp_security = "none"\n'
        'c.Mailer.from_address = "fedhub <noreply@hub.example>"\n' + extra
    )


def spool_events(hub, action: str) -> list[dict]:
    """The audit events of ``action`` in the hub's spool, oldest first."""
    found = []
    for path in sorted((hub.state_dir / "spool").glob("events-*.jsonl")):
        found += [
            e for e in map(json.loads, path.read_text().splitlines()) if e["action"] == action
        ]
    return found
