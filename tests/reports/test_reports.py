"""The bundled reports run under papermill against a real hub's services, as the user
running them, and render to HTML with their charts (issue 15, bundled reports).

Each run is checked by its output cells: the charts are there as images, the tables name
the right users, and no other tenant's user appears.
"""

from __future__ import annotations

import json

import nbformat
import papermill
import pytest
from nbconvert import HTMLExporter

from tests.browser import DOCS_IMG, browser, docs_screenshots  # noqa: F401
from tests.reports.conftest import REPORTS

pytestmark = pytest.mark.slow


def run_report(name: str, out_dir, **parameters) -> nbformat.NotebookNode:
    """Execute ``notebooks/reports/<name>.ipynb`` with ``parameters``; the executed notebook."""
    out = out_dir / f"{name}-out.ipynb"
    papermill.execute_notebook(
        str(REPORTS / f"{name}.ipynb"),
        str(out),
        parameters=parameters,
        cwd=str(out_dir),
        kernel_name="python3",
        progress_bar=False,
    )
    return nbformat.read(out, as_version=4)


def outputs(nb, mime: str) -> list[str]:
    """Every output of type ``mime`` (``image/png``, ``text/plain``, ...), in order."""
    return [
        o["data"][mime] for c in nb.cells for o in c.get("outputs", []) if mime in o.get("data", {})
    ]


def text(nb) -> str:
    return "\n".join(outputs(nb, "text/plain") + outputs(nb, "text/markdown"))


def to_html(nb) -> str:
    """The report as its readers get it: outputs only, no code."""
    body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True).from_notebook_node(nb)
    return body


def test_usage_report_for_a_tenant_admin(rhub, as_user, tmp_path, browser):  # noqa: F811
    as_user("acme-admin")
    nb = run_report("usage", tmp_path, month=rhub.month)
    # three charts: usage against the tier, cost beyond it, each user's share
    assert len(outputs(nb, "image/png")) == 3, text(nb)
    shown = text(nb)
    assert "**Tenant:** `acme`" in shown and "every user" in shown
    assert "alice" in shown and "dave" in shown
    assert "bob" not in shown  # globex's member
    html = to_html(nb)
    assert html.count('src="data:image/png;base64,') == 3
    assert "Traceback" not in html
    if docs_screenshots():
        page_of(browser, html, tmp_path / "usage.html").screenshot(
            path=str(DOCS_IMG / "report-usage.png"), full_page=True
        )


def test_usage_report_for_a_member_shows_their_own_usage(rhub, as_user, tmp_path):
    as_user("alice")
    nb = run_report("usage", tmp_path, month=rhub.month)
    shown = text(nb)
    assert "your own usage (alice)" in shown
    assert "dave" not in shown and "bob" not in shown
    assert len(outputs(nb, "image/png")) == 2  # her usage, her share of the cost


def test_another_tenant_sees_none_of_acme(rhub, as_user, tmp_path):
    as_user("globex-admin")
    shown = text(run_report("usage", tmp_path, month=rhub.month))
    assert "**Tenant:** `globex`" in shown and "bob" in shown
    assert "alice" not in shown and "dave" not in shown
    # naming acme is refused by the service, so the report fails rather than show it
    with pytest.raises(papermill.PapermillExecutionError) as refused:
        run_report("usage", tmp_path, tenant="acme", month=rhub.month)
    assert refused.value.ename == "FedhubAPIError"
    assert refused.value.evalue == "no tenant 'acme'"  # as if acme did not exist


def test_experiments_summary(rhub, as_user, tmp_path, browser):  # noqa: F811
    as_user("dave")  # acme's analyst: alice's experiments are his tenant's
    nb = run_report("experiments", tmp_path, month=rhub.month)
    shown = text(nb)
    assert "**Experiments:** 2" in shown and "fedavg" in shown
    # per user and outcome, run time, final accuracy
    assert len(outputs(nb, "image/png")) == 3, shown
    html = to_html(nb)
    assert "Traceback" not in html
    assert json.dumps(nb.metadata.papermill.parameters) == json.dumps({"month": rhub.month})
    if docs_screenshots():
        page_of(browser, html, tmp_path / "experiments.html").screenshot(
            path=str(DOCS_IMG / "report-experiments.png"), full_page=True
        )


def page_of(browser, html: str, path):  # noqa: F811
    """The rendered report opened in the browser (for the docs' screenshots)."""
    path.write_text(html)
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    page.goto(path.as_uri())
    return page
