"""The hub killed in the middle of a run and started again: the run is failed, never run a
second time, and a job whose times passed while the hub was down runs once for all of them."""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import UTC, datetime

import psutil
import pytest

from fedhub import accounts
from fedhub.db.base import utcnow
from tests.harness import wait_for
from tests.scheduler.conftest import put_notebook, spooled_events, wait_status
from tests.scheduler.notebooks import sleeper, whoami

pytestmark = pytest.mark.slow

TICK = 10  # seconds between the times of the test's "tick" job


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z"))


def _run_processes(username: str) -> list[str]:
    """The command lines of the live processes of runs (papermill's child and its kernel)
    as the owner's account."""
    uid = accounts.lookup(accounts.account_name(username)).pw_uid
    found = []
    for p in psutil.process_iter(["uids", "cmdline", "status"]):
        uids = p.info["uids"]
        if uids and uids.real == uid and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(" ".join(p.info["cmdline"] or []))
    return found


def kill_hub(hub) -> None:
    """SIGKILL the hub, its proxy and its services, as a crash of the machine would.

    The services run in sessions of their own (JupyterHub starts them so), so they are
    found as the hub's descendants; the runs' processes (the owner's) are left alone: they
    must end by themselves when their service dies.
    """
    root = psutil.Process(hub.proc.pid)
    hub_uid = root.uids().real
    family = [p for p in root.children(recursive=True) if p.uids().real == hub_uid]
    os.killpg(hub.proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    hub.proc.wait()


def test_a_killed_hub_fails_the_run_once_and_catches_up_once(sched_hub, api):
    hub, alice = sched_hub, api("alice")
    put_notebook(hub, "alice", "long.ipynb", sleeper(300))
    put_notebook(hub, "alice", "whoami.ipynb", whoami())
    long_job = alice.schedule(notebook="long.ipynb", cron="0 6 1 1 *", name="long")
    started = alice.call("POST", f"/jobs/{long_job['id']}/run").json()
    wait_status(alice, started["id"], ("running",), timeout=30)
    wait_for(lambda: _run_processes("alice"), 30, 0.2, "the run's process as alice")
    tick = alice.schedule(notebook="whoami.ipynb", cron=f"* * * * * */{TICK}", name="tick")

    kill_hub(hub)
    killed = utcnow()
    # the run's processes die with the service (PR_SET_PDEATHSIG), not left to write alone
    wait_for(lambda: not [c for c in _run_processes("alice") if "scheduler.execute" in c],
             20, 0.2, "the run's process to end")  # fmt: skip
    # at least two of tick's times (every tenth second) pass while the hub is down
    second_tick = (math.floor(killed.replace(tzinfo=UTC).timestamp() / TICK) + 2) * TICK
    time.sleep(max(0.0, second_tick - time.time()) + 0.5)
    restarted = utcnow()
    assert (restarted - killed).total_seconds() > TICK
    hub.start()

    run = wait_status(alice, started["id"], ("failed",), timeout=60)
    assert "stopped while this run was executing" in run["error"]
    assert "not re-run" in run["error"]
    caught_up = alice.wait_runs(
        tick["id"],
        lambda rs: any(killed < _time(r["scheduled_for"]) < restarted for r in rs),
        timeout=60,
        what="the caught-up run",
    )
    time.sleep(4)  # several more looks for work: none may add a run for the missed times
    runs = alice.runs(tick["id"])
    missed = [r for r in runs if killed < _time(r["scheduled_for"]) < restarted]
    assert len(missed) == 1, missed
    assert caught_up and missed[0]["trigger"] == "schedule"
    assert alice.call("PATCH", f"/jobs/{tick['id']}", json={"paused": True}).status_code == 200
    # never twice: the killed run stays the long job's only run, failed
    [only] = alice.runs(long_job["id"])
    assert only["id"] == started["id"] and only["status"] == "failed"
    failed = [e for e in spooled_events(hub) if e["action"] == "scheduler.run_failed"
              and e["target"] == f"scheduled-run:{started['id']}"]  # fmt: skip
    assert len(failed) == 1
