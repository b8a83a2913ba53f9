"""A hub with the experiments service, shared by this directory's end-to-end tests.

Two Dask workers, at most two experiments running at once and one per tenant, so that the
fair-share test can see a second tenant get a slot while the first has work queued.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import psutil
import pytest

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/services/experiments/api/v1"

#: A tiny experiment: a few seconds on two workers.
TINY = {"dataset": "synthetic", "clients": 6, "clients_per_round": 4, "rounds": 4, "seed": 1}


class ExperimentsAPI:
    """The service through the hub's proxy, as a given user."""

    def __init__(self, hub, user: str):
        self.hub = hub
        self.user = user
        self.token = hub.token(user)

    def call(self, method: str, path: str, **kw):
        return self.hub.api(method, f"{SERVICE}{path}", self.token, **kw)

    def submit(self, **spec):
        return self.call("POST", "/experiments", json=spec)

    def get(self, exp_id: str) -> dict:
        r = self.call("GET", f"/experiments/{exp_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, exp_id: str, pred, timeout: float = 90, what: str = "experiment"):
        return wait_for(lambda: (d := self.get(exp_id)) and pred(d) and d, timeout, 0.2, what)

    def wait_done(self, exp_id: str, timeout: float = 90) -> dict:
        return self.wait(
            exp_id, lambda d: d["status"] in ("completed", "failed", "cancelled"), timeout
        )

    def settle(self, timeout: float = 90) -> None:
        """Cancel the tenant's unfinished runs (left by other modules on this session's hub)
        and wait until they end: a test of the scheduler's slots starts from none taken."""
        r = self.call("GET", "/experiments", params={"limit": 500})
        assert r.status_code == 200, r.text
        for run in r.json()["experiments"]:
            if run["status"] in ("queued", "running"):
                self.call("POST", f"/experiments/{run['id']}/cancel")
                self.wait_done(run["id"], timeout)


def wait_for_experiments_service(hub) -> None:
    """Until the experiments service answers through the hub's proxy (its API is up)."""
    token = hub.token("alice")
    wait_for(
        lambda: hub.api("GET", f"{SERVICE}/quota", token).status_code == 200,
        120,
        0.3,
        "the experiments service",
    )


@pytest.fixture(scope="session")
def exp_hub(hub_factory):
    env = {
        "FEDHUB_EXPERIMENTS_WORKERS": "2",
        "FEDHUB_EXPERIMENTS_MAX_RUNNING": "2",
        "FEDHUB_EXPERIMENTS_MAX_RUNNING_PER_TENANT": "1",
        "FEDHUB_EXPERIMENTS_WARM_UP": "1",
    }
    hub = hub_factory(env=env, keep=True)  # the session's experiments hub
    wait_for_experiments_service(hub)
    return hub


@pytest.fixture(scope="session")
def api(exp_hub):
    return lambda user: ExperimentsAPI(exp_hub, user)


def service_url(hub) -> str:
    r = hub.api("GET", "/hub/api/services/experiments", hub.token("admin"))
    r.raise_for_status()
    return r.json()["url"].rstrip("/") + "/services/experiments/"


def service_pid(hub) -> int:
    for p in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if "fedhub.services.experiments" in cmd:
            return p.pid
    raise LookupError("experiments service process not found")


def kill_service(hub) -> int:
    """SIGKILL the service (not its Dask workers: they are orphaned like in a crash)."""
    pid = service_pid(hub)
    os.kill(pid, signal.SIGKILL)
    return pid


def sql(hub, query: str, *args):
    path = hub.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(query, args).fetchall()


def spooled_events(hub) -> list[dict]:
    out = []
    for f in (hub.state_dir / "spool").glob("events-*.jsonl"):
        out += [json.loads(line) for line in f.read_text().splitlines() if line]
    return out
