"""Outgoing email: through an SMTP server, or into ``<state>/outbox/`` on the embedded default.

Sign-up verification links use it today; invitations and scheduler
notifications are meant to. One call, ``Mailer.send(to, subject, text, html=None)``,
and one place to configure, for every process that loads the same config::

    c.Mailer.smtp_host = "smtp.example.org"
    c.Mailer.smtp_port = 587
    c.Mailer.smtp_security = "starttls"      # or "ssl" (port 465), or "none"
    c.Mailer.smtp_username = "fedhub"
    c.Mailer.smtp_password = "..."           # or $FEDHUB_SMTP_PASSWORD; never logged
    c.Mailer.from_address = "fedhub <noreply@example.org>"

With no ``smtp_host`` (the embedded default, ``make run``) nothing leaves the
machine: each message is written as an ``.eml`` file, private to the hub's
account (directory 0700, files 0600), for the operator to read.

``send`` blocks (SMTP is a network conversation): code on an event loop calls
``await mailer.send_async(...)``, which runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

from traitlets import Enum, Float, Integer, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from fedhub.accounts import make_private_dir, write_private


class MailError(RuntimeError):
    """A message could not be sent; the message is safe to show (no credentials)."""


def _env(name: str, fallback: str = "") -> str:
    return os.environ.get(name, fallback)


class Mailer(LoggingConfigurable):
    """Sends fedhub's email (sign-up links, invitations, notifications)."""

    smtp_host = Unicode(
        config=True,
        help="""SMTP server to send through. Empty (the default): no server; every
        message is written to ``outbox_dir`` instead. Fallback: ``$FEDHUB_SMTP_HOST``.

            c.Mailer.smtp_host = "smtp.example.org"
        """,
    )

    @default("smtp_host")
    def _default_smtp_host(self):
        return _env("FEDHUB_SMTP_HOST")

    smtp_port = Integer(
        0,
        config=True,
        help="""SMTP port. 0 (the default): 465 with ``ssl``, 587 with ``starttls``,
        25 with ``none``. Fallback: ``$FEDHUB_SMTP_PORT``.

            c.Mailer.smtp_port = 587
        """,
    )

    @default("smtp_port")
    def _default_smtp_port(self):
        return int(_env("FEDHUB_SMTP_PORT", "0") or 0)

    smtp_security = Enum(
        ["starttls", "ssl", "none"],
        default_value="starttls",
        config=True,
        help="""How the connection to the SMTP server is protected: ``starttls``
        (the default; refused if the server does not offer it), ``ssl`` (TLS from
        the first byte, usually port 465) or ``none`` (a local relay only).

            c.Mailer.smtp_security = "ssl"
        """,
    )
    smtp_username = Unicode(
        config=True,
        help="""User name for SMTP AUTH; empty: no login. Fallback: ``$FEDHUB_SMTP_USERNAME``.

            c.Mailer.smtp_username = "fedhub"
        """,
    )

    @default("smtp_username")
    def _default_smtp_username(self):
        return _env("FEDHUB_SMTP_USERNAME")

    smtp_password = Unicode(
        config=True,
        help="""Password for SMTP AUTH. Never logged or shown. Prefer the
        ``$FEDHUB_SMTP_PASSWORD`` fallback to writing it into a config file.

            c.Mailer.smtp_password = os.environ["MY_SMTP_PASSWORD"]
        """,
    )

    @default("smtp_password")
    def _default_smtp_password(self):
        return _env("FEDHUB_SMTP_PASSWORD")

    smtp_timeout = Float(
        15.0,
        config=True,
        help="Seconds to wait for the SMTP server before giving up on a message.",
    )
    from_address = Unicode(
        config=True,
        help="""The From: address of every message. Fallback: ``$FEDHUB_MAIL_FROM``,
        else ``fedhub@<this host's name>``.

            c.Mailer.from_address = "fedhub <noreply@example.org>"
        """,
    )

    @default("from_address")
    def _default_from_address(self):
        return _env("FEDHUB_MAIL_FROM") or f"fedhub@{socket.getfqdn() or 'localhost'}"

    @validate("from_address")
    def _validate_from_address(self, proposal):
        _, addr = parseaddr(proposal["value"])
        if "@" not in addr:
            raise ValueError(f"Mailer.from_address {proposal['value']!r} is not an email address")
        return proposal["value"]

    outbox_dir = Unicode(
        config=True,
        help="""Where messages go when no ``smtp_host`` is set: one ``.eml`` file each,
        private to fedhub's account. Default: ``$FEDHUB_STATE_DIR/outbox``.

            c.Mailer.outbox_dir = "/var/lib/fedhub/outbox"
        """,
    )

    @default("outbox_dir")
    def _default_outbox_dir(self):
        return str(Path(_env("FEDHUB_STATE_DIR", ".fedhub")) / "outbox")

    @property
    def uses_outbox(self) -> bool:
        """True on the embedded default: messages are files, not email."""
        return not self.smtp_host

    # -- sending -------------------------------------------------------------

    def message(self, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
        """The message ``send`` would send (plain text, with an HTML alternative if given)."""
        if not to or "@" not in to or any(c in to for c in "\r\n"):
            raise MailError(f"cannot send email to {to!r}: not an email address")
        msg = EmailMessage()
        msg["From"] = self.from_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = parseaddr(self.from_address)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    def send(self, to: str, subject: str, text: str, html: str | None = None) -> str:
        """Send one message; returns its Message-ID. Raises :class:`MailError`."""
        msg = self.message(to, subject, text, html)
        if self.uses_outbox:
            path = self._write_outbox(msg)
            self.log.info("No SMTP server configured: message to %s written to %s", to, path)
        else:
            self._send_smtp(msg)
            self.log.info("Sent email %r to %s through %s", subject, to, self.smtp_host)
        return msg["Message-ID"]

    async def send_async(self, to: str, subject: str, text: str, html: str | None = None) -> str:
        """:meth:`send` in a worker thread, for code running on an event loop."""
        return await asyncio.to_thread(self.send, to, subject, text, html)

    def _write_outbox(self, msg: EmailMessage) -> Path:
        folder = make_private_dir(self.outbox_dir)
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = folder / f"{name}-{uuid.uuid4().hex[:12]}.eml"
        return write_private(path, msg.as_bytes())

    def _port(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.smtp_security]

    def _send_smtp(self, msg: EmailMessage) -> None:
        host, port = self.smtp_host, self._port()
        context = ssl.create_default_context()
        try:
            if self.smtp_security == "ssl":
                client = smtplib.SMTP_SSL(host, port, timeout=self.smtp_timeout, context=context)
            else:
                client = smtplib.SMTP(host, port, timeout=self.smtp_timeout)
            with client:
                if self.smtp_security == "starttls":
                    client.starttls(context=context)
                if self.smtp_username:
                    client.login(self.smtp_username, self.smtp_password)
                client.send_message(msg)
        except smtplib.SMTPAuthenticationError:
            raise MailError(
                f"the SMTP server {host}:{port} refused the login of {self.smtp_username!r}"
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            # the exception text may quote the server's reply, never our password
            raise MailError(
                f"could not send email through {host}:{port}: {type(e).__name__}: {e}"
            ) from None


def mask_email(email: str) -> str:
    """``mallory@acme.example`` → ``m***@acme.example``: enough to recognise, not to harvest."""
    local, _, domain = (email or "").rpartition("@")
    if not local:
        return "***"
    return f"{local[0]}***@{domain}"


def load_mailer(
    config_file: str | Path | None = None, state_dir: str | Path | None = None
) -> Mailer:
    """A :class:`Mailer` for processes outside the hub (the CLI): its ``c.Mailer.*``
    settings from ``config_file`` (e.g. ``<state>/jupyterhub_config.py``) if it exists,
    else the environment fallbacks; the outbox under ``state_dir`` unless configured."""
    from traitlets.config import Config, PyFileConfigLoader

    config = Config()
    if config_file and Path(config_file).is_file():
        path = Path(config_file).resolve()
        config = PyFileConfigLoader(path.name, str(path.parent)).load_config()
    mailer = Mailer(config=config)
    if state_dir is not None and "outbox_dir" not in config.Mailer:
        mailer.outbox_dir = str(Path(state_dir) / "outbox")
    return mailer
