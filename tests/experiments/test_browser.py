"""Must-show 4: in headless Chromium (Debian's package, driven by Playwright), alice logs
in, opens the experiments dashboard in Voila inside her server, and sees the monitor's
chart gain rounds while an experiment runs.

Set ``FEDHUB_DOCS_SCREENSHOTS=1`` to also refresh the screenshots in docs/img/.
"""

import os
import shutil

import pytest

from tests.experiments.conftest import ROOT, TINY
from tests.harness import wait_for

pytestmark = pytest.mark.slow

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


def test_monitor_chart_updates_in_voila(exp_hub, api, browser, tmp_path):
    hub, alice = exp_hub, api("alice")
    # long enough to still be running when the page is up (it is cancelled at the end);
    # a short run on a quiet machine finished before Voila had rendered the chart
    spec = {**TINY, "name": "browser: FedAvg on Synthetic", "rounds": 2000, "clients": 8}
    spec.update(clients_per_round=8, local_epochs=4)
    exp_id = alice.submit(**spec).json()["id"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit, button[type=submit], input[type=submit]")
    token = alice.token

    def ready():
        server = hub.api("GET", "/hub/api/users/alice", token).json()["servers"].get("")
        return server and server["ready"]

    page.wait_for_url("**/hub/**", timeout=30_000)
    assert "/hub/login" not in page.url, "login through the form failed"
    # the form login may have started the server already (400 then), or shown a spawn form
    r = hub.api("POST", "/hub/api/users/alice/server", token)
    assert r.status_code in (201, 202, 400), r.text
    try:
        wait_for(ready, 90, 0.5, "alice's server")
        home = hub.state_dir / "homes" / "alice"
        shutil.copy(ROOT / "notebooks" / "dashboards" / "experiments.ipynb", home / "dash.ipynb")
        page.goto(f"{hub.url}/user/alice/voila/render/dash.ipynb?experiment_id={exp_id}")
        chart = page.wait_for_selector("svg.fedhub-chart", timeout=90_000)
        page.wait_for_selector(".fedhub-quota-panel", timeout=10_000)
        first = int(chart.get_attribute("data-rounds"))
        wait_for(
            lambda: int(page.get_attribute("svg.fedhub-chart", "data-rounds")) >= first + 2,
            60,
            0.25,
            "the chart to gain rounds",
        )
        points = page.get_attribute("svg.fedhub-chart polyline.fedhub-acc", "points")
        assert len(points.split()) >= first + 2
        status = page.get_attribute(".fedhub-status", "data-status")
        assert status in ("running", "completed")
        if os.environ.get("FEDHUB_DOCS_SCREENSHOTS"):
            wait_for(
                lambda: int(page.get_attribute("svg.fedhub-chart", "data-rounds")) >= 25,
                90,
                0.25,
                "a chart worth showing",
            )
            img = ROOT / "docs" / "img"
            img.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(img / "experiments-dashboard.png"), full_page=True)
            page.locator(".fedhub-experiment-monitor").screenshot(
                path=str(img / "experiments-monitor.png")
            )
            page.locator(".fedhub-quota-panel").screenshot(path=str(img / "experiments-quota.png"))
        else:
            page.screenshot(path=str(tmp_path / "dashboard.png"))
    finally:
        alice.call("POST", f"/experiments/{exp_id}/cancel")
        hub.api("DELETE", "/hub/api/users/alice/server", token)
        wait_for(
            lambda: not hub.api("GET", "/hub/api/users/alice", token).json()["servers"],
            30,
            0.5,
            "alice's server to stop",
        )
