"""The notebook client's widget of my jobs and their last results, with the real client
against the scheduler of a real hub (as a notebook of alice's server would call it)."""

from __future__ import annotations

import pytest

from fedhub.client import scheduler
from tests.scheduler.conftest import put_notebook, wait_status
from tests.scheduler.notebooks import whoami

pytestmark = pytest.mark.slow


@pytest.fixture
def as_alice(sched_hub, api, monkeypatch):
    alice = api("alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", alice.token)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("FEDHUB_SCHEDULER_URL", f"{sched_hub.url}/services/scheduler/")
    return alice


def test_the_widget_lists_my_jobs_and_their_last_results(sched_hub, api, as_alice):
    put_notebook(sched_hub, "alice", "widget.ipynb", whoami())
    ran = scheduler.schedule("widget.ipynb", cron="0 6 1 1 *", name="ran once")
    run = wait_status(as_alice, ran.run_now().id, ("succeeded", "failed"))
    never = scheduler.schedule("widget.ipynb", cron="0 6 1 1 *", name="never ran")
    widget = scheduler.jobs_widget(page_size=1000)
    rows = {row[0]: row for row in widget.table.rows}
    assert rows["ran once"][4:7] == [run["scheduled_for"], "succeeded",
                                     "notebook.html, notebook.ipynb"]  # fmt: skip
    assert rows["never ran"][4:6] == ["never", "-"]
    assert "0 6 1 1 * UTC" in rows["never ran"][2]
    # only alice's: not acme's monthly report (acme-admin's), nothing of globex
    assert "Monthly usage report" not in rows
    everyone = as_alice.call("GET", "/jobs").json()["jobs"]
    assert set(rows) == {j["name"] for j in everyone if j["user"] == "alice"}
    assert {j["user"] for j in everyone} > {"alice"}  # others' jobs were there to leave out
    assert (
        "never ran" in widget.table.table.value
        and "fedhub-scheduler-jobs" in widget.table.table.value
    )

    never.pause()
    widget.refresh_button.click()  # what the Refresh button does
    assert "(paused)" in {row[0]: row for row in widget.table.rows}["never ran"][2]
    paged = scheduler.jobs_widget(page_size=1)
    assert paged.table.label.value.startswith(f"page 1 of {len(rows)}")
