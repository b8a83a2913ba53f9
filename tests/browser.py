"""Browser tests' shared parts: headless Chromium (Debian's package, driven by Playwright),
logging in through the hub's form, and a user's server started and stopped around a test.

A test module imports the fixture by name (``from tests.browser import browser``).
Set ``FEDHUB_DOCS_SCREENSHOTS=1`` to have the tests that take them refresh docs/img/.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.harness import wait_for

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def docs_screenshots() -> bool:
    """True when this run should refresh the screenshots in docs/img/."""
    return bool(os.environ.get("FEDHUB_DOCS_SCREENSHOTS"))


@pytest.fixture
def browser():
    # `make test` installs Debian's chromium; a missing browser is a set-up bug, not a skip
    assert os.path.exists(CHROMIUM), "Chromium is not installed (apt-get install -y chromium)"
    from playwright import sync_api

    # Playwright gives every launch a fresh temporary profile (its own --user-data-dir)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def log_in(page, hub, user: str) -> None:
    """Log ``user`` in through the hub's form (which may start their server)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit, button[type=submit], input[type=submit]")
    page.wait_for_url("**/hub/**", timeout=30_000)
    assert "/hub/login" not in page.url, "login through the form failed"


@contextlib.contextmanager
def running_server(hub, user: str, token: str):
    """``user``'s default server, started (if the form login has not) and ready; stopped after."""
    r = hub.api("POST", f"/hub/api/users/{user}/server", token)
    assert r.status_code in (201, 202, 400), r.text  # 400: the form login started it already

    def state():
        return hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"]

    try:
        wait_for(lambda: (s := state().get("")) and s["ready"], 90, 0.5, f"{user}'s server")
        yield
    finally:
        hub.api("DELETE", f"/hub/api/users/{user}/server", token)
        wait_for(lambda: not state(), 30, 0.5, f"{user}'s server to stop")
