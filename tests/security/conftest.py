"""Fixtures of the sign-up tests: a real SMTP server in this process (aiosmtpd) and a
demo hub that sends through it as an operator would configure it (``c.Mailer.*`` in
``<state>/jupyterhub_config.py``, the embedded deployment's local overrides).

Package-scoped: ``test_signup.py`` and ``test_signup_approval.py`` share one hub
(they use different tenants and users).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, free_port
from tests.security.signup_mail import Inbox


@pytest.fixture(scope="package")
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture(scope="package")
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
