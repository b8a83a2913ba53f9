"""Must-show 4: in headless Chromium (Debian's package, driven by Playwright), alice logs
in, opens the experiments dashboard in Voila inside her server, and sees the chart gain
rounds while an experiment runs.

Nothing is copied into her home: the dashboard is the bundled one, which the fedhub server
extension links read-only into every user's server (extensions/server/dashboards.py).
Set ``FEDHUB_DOCS_SCREENSHOTS=1`` to also refresh the screenshots in docs/img/.
"""

import pytest

from tests.browser import DOCS_IMG, browser, docs_screenshots, log_in, running_server  # noqa: F401
from tests.experiments.conftest import TINY
from tests.harness import wait_for

pytestmark = pytest.mark.slow

#: how many rounds the live plotly chart of the followed experiment holds (plotly.js keeps
#: the figure's data on its graph div; no x at all before the first round)
ROUNDS_JS = """() => (
    document.querySelector('.fedhub-rounds-chart .js-plotly-plot').data[0].x || []
).length"""


def test_monitor_chart_updates_in_voila(exp_hub, api, browser, tmp_path):  # noqa: F811
    hub, alice = exp_hub, api("alice")
    # long enough to still be running when the page is up (it is cancelled at the end);
    # a short run on a quiet machine finished before Voila had rendered the chart
    spec = {**TINY, "name": "browser: FedAvg on Synthetic", "rounds": 2000, "clients": 8}
    spec.update(clients_per_round=8, local_epochs=4)
    exp_id = alice.submit(**spec).json()["id"]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    log_in(page, hub, "alice")
    try:
        with running_server(hub, "alice", alice.token):
            # the newest experiment of her tenant is the one just submitted
            page.goto(f"{hub.url}/user/alice/voila/render/dashboards/experiments.ipynb")
            page.wait_for_selector(".fedhub-rounds-chart .main-svg", timeout=90_000)
            page.wait_for_selector(".fedhub-quota-panel", timeout=10_000)
            page.wait_for_selector(".fedhub-status-chart .main-svg", timeout=10_000)
            assert exp_id in page.inner_text("table.fedhub-runs")
            first = page.evaluate(ROUNDS_JS)
            wait_for(
                lambda: page.evaluate(ROUNDS_JS) >= first + 2, 60, 0.25, "the chart to gain rounds"
            )
            status = page.get_attribute(".fedhub-status", "data-status")
            assert status in ("running", "completed")
            if docs_screenshots():
                wait_for(lambda: page.evaluate(ROUNDS_JS) >= 25, 90, 0.25, "a chart worth showing")
                # Voila scrolls inside its page: a tall window shows the whole dashboard
                page.set_viewport_size({"width": 1100, "height": 1500})
                page.screenshot(path=str(DOCS_IMG / "experiments-dashboard.png"), full_page=True)
                page.locator(".fedhub-experiment-monitor").screenshot(
                    path=str(DOCS_IMG / "experiments-monitor.png")
                )
                page.locator(".fedhub-quota-panel").screenshot(
                    path=str(DOCS_IMG / "experiments-quota.png")
                )
            else:
                page.screenshot(path=str(tmp_path / "dashboard.png"))
    finally:
        alice.call("POST", f"/experiments/{exp_id}/cancel")
