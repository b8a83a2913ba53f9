"""The scheduler service on a real hub: runs as the owner with her server stopped, outputs
in her home and through the API, failures audited and mailed, the tier's limits, the
run's compute on the invoice draft, and nothing of a job visible to another tenant."""

from __future__ import annotations

import os
import pwd
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fedhub import accounts
from fedhub.billing.invoices import get_invoice, invoice_document
from fedhub.billing.operations import Billing
from fedhub.billing.periods import containing
from fedhub.clock import FixedClock
from fedhub.db import session_scope
from fedhub.db.base import utcnow
from fedhub.tiers import load_tiers
from tests.harness import wait_for
from tests.scheduler.conftest import ALICE_EMAIL, put_notebook, spooled_events, sql, wait_status
from tests.scheduler.notebooks import failing, kernel_probe, sleeper, whoami

pytestmark = pytest.mark.slow
FINISHED = ("succeeded", "failed", "timed_out", "cancelled")


@pytest.fixture(scope="module")
def alice_job(sched_hub, api):
    """alice's notebook every 10 seconds, with her server started and stopped first; paused
    once two runs have finished."""
    hub, alice = sched_hub, api("alice")
    put_notebook(hub, "alice", "whoami.ipynb", whoami())
    assert hub.api("POST", "/hub/api/users/alice/server", alice.token).status_code in (201, 202)
    wait_for(lambda: hub.api("GET", "/hub/api/users/alice", alice.token).json()["servers"]
             .get("", {}).get("ready"), 90, 0.5, "alice's server")  # fmt: skip
    assert hub.api("DELETE", "/hub/api/users/alice/server", alice.token).status_code in (202, 204)
    wait_for(lambda: not hub.api("GET", "/hub/api/users/alice", alice.token).json()["servers"],
             60, 0.5, "alice's server to stop")  # fmt: skip
    job = alice.schedule(notebook="whoami.ipynb", cron="* * * * * */10", timezone="Europe/Paris",
                         parameters={"marker": "from-the-schedule"}, name="uid check")  # fmt: skip
    runs = alice.wait_runs(job["id"], lambda rs: sum(r["status"] in FINISHED for r in rs) >= 2,
                           timeout=120, what="two finished runs")  # fmt: skip
    r = alice.call("PATCH", f"/jobs/{job['id']}", json={"paused": True})
    assert r.status_code == 200 and r.json()["paused"] is True
    return job, [r for r in runs if r["status"] in FINISHED]


def test_runs_happen_as_the_owner_with_her_server_stopped(sched_hub, api, alice_job):
    hub, alice = sched_hub, api("alice")
    job, runs = alice_job
    assert not hub.api("GET", "/hub/api/users/alice", alice.token).json()["servers"]
    uid = pwd.getpwnam(accounts.account_name("alice")).pw_uid
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert len({r["scheduled_for"] for r in runs}) == len(runs)
    for run in runs[:2]:
        assert run["status"] == "succeeded", run
        folder = hub.state_dir / "homes" / "alice" / "reports" / job["id"] / run["id"]
        # the kernel's uid, written by the notebook itself, and every file's owner
        assert (folder / "whoami.txt").read_text() == f"{uid} from-the-schedule"
        assert "uid check" in (folder / "client.txt").read_text().splitlines()
        for name in ("notebook.ipynb", "notebook.html", "whoami.txt", "client.txt"):
            assert os.stat(folder / name).st_uid == uid, name
        assert os.stat(folder).st_mode & 0o077 == 0  # private to alice
        html = alice.call("GET", f"/runs/{run['id']}/outputs/notebook.html")
        assert html.status_code == 200 and f"uid {uid}" in html.text
        assert html.headers["Content-Security-Policy"] == "sandbox"
        ipynb = alice.call("GET", f"/runs/{run['id']}/outputs/notebook.ipynb")
        assert ipynb.status_code == 200 and "from-the-schedule" in ipynb.text
    listed = alice.call("GET", "/jobs").json()["jobs"]
    assert job["id"] in {j["id"] for j in listed}


def test_another_tenant_sees_runs_and_reads_nothing(sched_hub, api, alice_job):
    job, runs = alice_job
    bob, dave = api("bob"), api("dave")
    jid, rid = job["id"], runs[0]["id"]
    every = [
        ("GET", f"/jobs/{jid}", None),
        ("PATCH", f"/jobs/{jid}", {"paused": False}),
        ("DELETE", f"/jobs/{jid}", None),
        ("POST", f"/jobs/{jid}/run", None),
        ("GET", f"/jobs/{jid}/runs", None),
        ("GET", f"/runs/{rid}", None),
        ("POST", f"/runs/{rid}/cancel", None),
        ("GET", f"/runs/{rid}/outputs/notebook.html", None),
        ("GET", f"/runs/{rid}/outputs/notebook.ipynb", None),
    ]
    for method, path, body in every:
        r = bob.call(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    assert jid not in {j["id"] for j in bob.call("GET", "/jobs").json()["jobs"]}
    assert bob.call("GET", "/jobs?tenant=acme").status_code == 404
    # acme's analyst reads the job, and may not run it (scheduler:read only)
    assert dave.call("GET", f"/jobs/{jid}").status_code == 200
    assert dave.call("POST", f"/jobs/{jid}/run").status_code == 403
    assert api("alice").call("GET", f"/jobs/{jid}").json()["paused"] is True


def test_a_failing_notebook_fails_with_its_cell_audited_and_mailed(sched_hub, api, smtp):
    hub, alice = sched_hub, api("alice")
    inbox = smtp[1]
    put_notebook(hub, "alice", "broken.ipynb", failing())
    job = alice.schedule(notebook="broken.ipynb", cron="0 6 1 1 *", name="broken report")
    r = alice.call("POST", f"/jobs/{job['id']}/run")
    assert r.status_code == 202 and r.json()["trigger"] == "manual"
    run = wait_status(alice, r.json()["id"], FINISHED)
    assert run["status"] == "failed"
    assert run["error"] == "ValueError: the report broke on purpose"
    cell = run["error_cell"]
    assert cell["ename"] == "ValueError" and "broke on purpose" in cell["source"]
    assert cell["execution_count"] == 2 and cell["traceback"]
    assert "notebook.html" in run["outputs"]  # the failing cell is in the rendering too
    events = wait_for(lambda: [e for e in spooled_events(hub)
                               if e["action"] == "scheduler.run_failed"
                               and e["target"] == f"scheduled-run:{run['id']}"],
                      30, 0.5, "the failure's audit event")  # fmt: skip
    assert events[0]["tenant"] == "acme" and events[0]["actor"] == "alice"
    assert events[0]["result"] == "failure"
    [msg] = wait_for(lambda: inbox.to(ALICE_EMAIL), 30, 0.5, "the failure email")
    assert "broken report" in msg["Subject"] and "failed" in msg["Subject"]
    body = msg.get_body(("plain",)).get_content()
    assert run["id"] in body and "ValueError: the report broke on purpose" in body
    assert "raise ValueError" in body


def test_a_run_is_ended_at_its_timeout_or_when_cancelled(sched_hub, api):
    hub, alice = sched_hub, api("alice")
    put_notebook(hub, "alice", "slow.ipynb", sleeper(120))
    job = alice.schedule(notebook="slow.ipynb", cron="0 6 1 1 *", name="slow", timeout_seconds=8)
    timed = alice.call("POST", f"/jobs/{job['id']}/run").json()
    cancelled = alice.call("POST", f"/jobs/{job['id']}/run").json()
    wait_status(alice, cancelled["id"], ("running",), timeout=30)
    r = alice.call("POST", f"/runs/{cancelled['id']}/cancel")
    assert r.status_code == 202
    assert wait_status(alice, cancelled["id"], FINISHED)["status"] == "cancelled"
    run = wait_status(alice, timed["id"], FINISHED)
    assert run["status"] == "timed_out" and "timeout (8 s)" in run["error"]
    r = alice.call("POST", f"/runs/{timed['id']}/cancel")
    assert r.status_code == 409 and "already timed_out" in r.json()["error"]["message"]
    assert alice.call("DELETE", f"/jobs/{job['id']}").status_code == 204
    assert alice.call("GET", f"/jobs/{job['id']}").status_code == 404


def test_tier_limits_refuse_with_the_limit_named(sched_hub, api):
    hub, bob = sched_hub, api("bob")
    put_notebook(hub, "bob", "whoami.ipynb", whoami())
    r = bob.call("POST", "/jobs", json={"notebook": "whoami.ipynb", "cron": "*/5 * * * *"})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded" and "min_schedule_interval_minutes" in err["message"]
    assert err["details"]["limit"] == "min_schedule_interval_minutes"
    assert err["details"]["allowed"] == 60
    assert bob.schedule(notebook="whoami.ipynb", cron="0 * * * *")["user"] == "bob"
    r = bob.call("POST", "/jobs", json={"notebook": "whoami.ipynb", "cron": "0 8 * * *"})
    assert r.status_code == 429
    assert r.json()["error"]["details"]["limit"] == "scheduled_jobs_per_tenant"
    assert "scheduled_jobs_per_tenant" in r.json()["error"]["message"]
    # bad input is a 400 naming what is wrong, never a 500
    for body, words in (
        ({"notebook": "whoami.ipynb", "cron": "every day"}, "not a cron expression"),
        ({"notebook": "whoami.ipynb", "cron": "0 * * * *", "timezone": "Mars/Olympus"},
         "unknown time zone"),
        ({"notebook": "../alice/whoami.ipynb", "cron": "0 * * * *"}, "inside your home"),
        ({"notebook": "whoami.ipynb", "cron": "0 * * * *", "parameters": {"nope": 1}},
         "takes no parameter nope"),
        ({"notebook": "nosuchreport", "cron": "0 * * * *"}, "no bundled report"),
    ):  # fmt: skip
        r = bob.call("POST", "/jobs", json=body)
        assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_run_compute_is_metered_and_on_the_invoice_draft(sched_hub, alice_job):
    hub = sched_hub
    job, runs = alice_job
    rows = sql(hub, "SELECT kind, quantity, attributes FROM fedhub_meter_events "
                    "WHERE source = 'scheduler' AND tenant = 'acme'")  # fmt: skip
    by_run = {}
    for kind, quantity, attributes in rows:
        if kind == "cpu_seconds":
            by_run[attributes] = quantity
    assert len(by_run) >= 2 and all(q > 0 for q in by_run.values())
    scheduled_core_hours = sum(by_run.values()) / 3600
    # close this month as billing will once it is over: the draft prices the same meter
    catalog = load_tiers(hub.env["FEDHUB_TIERS"])
    period = containing(utcnow())
    billing = Billing(db_url=hub.db_url, catalog=catalog,
                      clock=FixedClock(period.end + timedelta(hours=1)))  # fmt: skip
    [draft] = billing.close(period, tenants=["acme"])
    assert draft["status"] == "draft"
    with session_scope(hub.db_url) as s:
        doc = invoice_document(s, get_invoice(s, "acme", period))
    [compute] = [line for line in doc["lines"] if line["meter"] == "compute_hours"]
    # the line's usage (what the tier's allowance is taken from) holds alice's runs
    alice = float(compute["attribution"]["users"]["alice"]["usage"])
    assert float(compute["usage"]) >= alice >= round(scheduled_core_hours, 6) > 0


def test_each_tenant_has_its_monthly_usage_report(sched_hub, api):
    """Made by the service at start, owned by the tenant's admin, invisible to others."""
    admin, bob = api("acme-admin"), api("bob")

    def report(caller):
        jobs = caller.call("GET", "/jobs").json()["jobs"]
        return [j for j in jobs if j["name"] == "Monthly usage report"]

    [job] = wait_for(lambda: report(admin), 30, 0.5, "acme's usage report")
    assert (job["tenant"], job["user"], job["notebook"], job["cron"]) == (
        "acme", "acme-admin", "usage", "0 6 1 * *")  # fmt: skip
    assert job["parameters"] == {"tenant": "acme"} and job["next_run_at"].endswith("T06:00:00Z")
    [theirs] = report(bob)
    assert theirs["tenant"] == "globex" and theirs["user"] == "globex-admin"
    assert bob.call("GET", f"/jobs/{job['id']}").status_code == 404


def test_a_job_runs_once_at_its_time_as_pdf(sched_hub, api, alice_job):
    alice = api("alice")
    paris = datetime.now(ZoneInfo("Europe/Paris")).replace(tzinfo=None, microsecond=0)
    past = alice.call("POST", "/jobs", json={"notebook": "whoami.ipynb", "timezone": "Europe/Paris",
                                             "at": (paris - timedelta(minutes=1)).isoformat()})  # fmt: skip
    assert past.status_code == 400 and "not in the future" in past.json()["error"]["message"]
    r = alice.call("POST", "/jobs", json={"notebook": "whoami.ipynb", "cron": "0 6 1 1 *",
                                          "formats": ["html", "docx"]})  # fmt: skip
    assert r.status_code == 400 and "unknown output format docx" in r.json()["error"]["message"]
    job = alice.schedule(notebook="whoami.ipynb", at=(paris + timedelta(seconds=3)).isoformat(),
                         timezone="Europe/Paris", parameters={"marker": "once"}, name="once",
                         formats=["pdf"])  # fmt: skip
    assert job["cron"] is None and job["at"] == job["next_run_at"]
    assert job["formats"] == ["ipynb", "pdf"]
    [run] = alice.wait_runs(job["id"], lambda rs: rs[0]["status"] in FINISHED, what="the run")
    assert run["status"] == "succeeded" and run["scheduled_for"] == job["at"]
    assert run["outputs"] == ["notebook.ipynb", "notebook.pdf"]
    pdf = alice.call("GET", f"/runs/{run['id']}/outputs/notebook.pdf")
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert alice.call("GET", f"/runs/{run['id']}/outputs/notebook.html").status_code == 404
    assert alice.call("GET", f"/jobs/{job['id']}").json()["next_run_at"] is None
    r = alice.call("PATCH", f"/jobs/{job['id']}", json={"paused": False})
    assert r.status_code == 409 and "new 'at'" in r.json()["error"]["message"]


def test_a_job_runs_on_a_kernel_its_tier_offers(sched_hub, api, alice_job):
    hub, alice, bob = sched_hub, api("alice"), api("bob")
    put_notebook(hub, "bob", "probe.ipynb", kernel_probe())
    r = bob.call("POST", "/jobs", json={"notebook": "probe.ipynb", "cron": "0 6 1 1 *",
                                        "kernel": "fedhub-torch"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert (
        "Starter tier offers the kernels python3, not 'fedhub-torch'"
        in r.json()["error"]["message"]
    )
    put_notebook(hub, "alice", "probe.ipynb", kernel_probe())
    job = alice.schedule(notebook="probe.ipynb", cron="0 6 1 1 *", kernel="fedhub-torch")
    assert job["kernel"] == "fedhub-torch"
    run = wait_status(alice, alice.call("POST", f"/jobs/{job['id']}/run").json()["id"], FINISHED)
    assert run["status"] == "succeeded", run["error"]
    folder = hub.state_dir / "homes" / "alice" / "reports" / job["id"] / run["id"]
    assert (folder / "kernel.txt").read_text() == "fedhub-torch"


def test_old_runs_outputs_are_deleted_beyond_keep_runs(sched_hub, api, alice_job):
    hub, alice = sched_hub, api("alice")
    job = alice.schedule(notebook="whoami.ipynb", cron="0 6 1 1 *", keep_runs=1)
    first, second = (
        wait_status(alice, alice.call("POST", f"/jobs/{job['id']}/run").json()["id"], FINISHED)
        for _ in range(2)
    )
    assert second["status"] == "succeeded" and "notebook.html" in second["outputs"]
    reports = hub.state_dir / "homes" / "alice" / "reports" / job["id"]
    wait_for(lambda: alice.call("GET", f"/runs/{first['id']}").json()["outputs"] == [], 30, 0.5,
             "the first run's outputs to be deleted")  # fmt: skip
    assert not (reports / first["id"]).exists() and (reports / second["id"]).is_dir()
    r = alice.call("GET", f"/runs/{first['id']}/outputs/notebook.html")
    assert r.status_code == 404
    assert alice.call("GET", f"/runs/{second['id']}").json()["outputs"] == second["outputs"]
