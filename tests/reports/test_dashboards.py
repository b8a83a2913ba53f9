"""Issue 15, must-show 6 (usage side): alice's own server offers the bundled dashboards
with nothing copied by hand. Her JupyterLab launcher has their entries; the "My usage" one
opens the dashboard in Voila, in a new browser tab, with its plotly charts drawn from her
usage; the experiments dashboard pages its table; the dashboards are a read-only link to
the shared originals.

The experiments dashboard's live chart is tested in tests/experiments/test_browser.py.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from fedhub import accounts
from fedhub.extensions.server.dashboards import SOURCE
from tests.browser import DOCS_IMG, browser, docs_screenshots, log_in, running_server  # noqa: F401

pytestmark = pytest.mark.slow

LAUNCHER_API = "/user/alice/jupyterlab-app-launcher"
#: bars of a plotly chart, read from the figure plotly.js keeps on its graph div
BARS_JS = "(el) => el.data[0].x.length"


def test_usage_dashboard_from_the_launcher_in_voila(rhub, browser, tmp_path):  # noqa: F811
    token = rhub.token("alice")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, rhub, "alice")
    with running_server(rhub, "alice", token):
        entries = rhub.api("POST", LAUNCHER_API, token, json={"method": "init_launcher"}).json()
        urls = {e["title"]: e["source"] for e in entries}
        assert urls == {
            "My usage": "/user/alice/voila/render/dashboards/usage.ipynb",
            "Experiments": "/user/alice/voila/render/dashboards/experiments.ipynb",
        }
        assert_read_only_link(rhub, token)

        page.goto(f"{rhub.url}/user/alice/lab")
        card = page.locator(".jp-LauncherCard", has_text="My usage")
        card.wait_for(timeout=90_000)
        assert page.locator(".jp-LauncherCard", has_text="Experiments").count() == 1
        if docs_screenshots():
            page.screenshot(path=str(DOCS_IMG / "dashboards-launcher.png"))
        with page.context.expect_page() as opened:
            card.click()  # a new browser tab: user servers may not be framed
        voila = opened.value
        voila.wait_for_url(f"{rhub.url}{urls['My usage']}", timeout=30_000)
        usage_chart = voila.locator(".fedhub-usage-chart")
        voila.locator(".fedhub-usage-chart .main-svg").first.wait_for(timeout=90_000)
        voila.locator(".fedhub-tier-chart .main-svg").first.wait_for(timeout=10_000)
        assert usage_chart.evaluate(BARS_JS) >= 1  # her compute
        summary = voila.locator(".fedhub-usage-summary").inner_text()
        assert "acme" in summary and "alice" in summary
        assert voila.locator(".fedhub-cost-chart").count() == 0  # a member: no one else's cost
        if docs_screenshots():
            voila.set_viewport_size({"width": 1280, "height": 1100})  # the same width: no re-layout
            voila.screenshot(path=str(DOCS_IMG / "dashboards-usage.png"))

        # the experiments dashboard, one experiment a page (the URL sets its parameters)
        voila.goto(f"{rhub.url}{urls['Experiments']}?page_size=1")
        voila.locator(".fedhub-status-chart .main-svg").first.wait_for(timeout=90_000)
        table = voila.locator("table.fedhub-runs")
        assert table.get_attribute("data-pages") == "2"
        newest, older = rhub.experiment_ids
        assert newest in table.inner_text() and older not in table.inner_text()
        voila.locator(".fedhub-paged-table button", has_text="Next").click()
        voila.locator("table.fedhub-runs[data-page='2']").wait_for(timeout=10_000)
        assert older in table.inner_text() and newest not in table.inner_text()


def assert_read_only_link(hub, token):
    """``~/dashboards`` is a link alice's own account made to the shared originals, which
    her server cannot overwrite."""
    home = hub.state_dir / "homes" / "alice"
    link = home / "dashboards"
    assert link.is_symlink() and os.readlink(link) == str(SOURCE)
    assert os.lstat(link).st_uid == pwd.getpwnam(accounts.account_name("alice")).pw_uid
    original = (SOURCE / "usage.ipynb").read_bytes()
    path = "/user/alice/api/contents/dashboards/usage.ipynb"
    model = hub.api("GET", path, token).json()
    model["content"]["cells"] = []
    r = hub.api("PUT", path, token, data=json.dumps(model))
    assert r.status_code == 403, r.text
    assert (SOURCE / "usage.ipynb").read_bytes() == original
