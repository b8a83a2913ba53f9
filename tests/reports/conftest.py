"""A hub whose billing and experiments services have something to report.

This month alice has two finished experiments, and acme's alice and dave and globex's bob
have usage on the meter (:data:`HOURS`); the bundled reports and dashboards then read it back through
the services as whoever runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhub import db
from fedhub.db.base import utcnow
from fedhub.metering import Usage, record
from tests.experiments.conftest import TINY
from tests.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "notebooks" / "reports"
BILLING = "/services/billing/api/v1"
EXPERIMENTS = "/services/experiments/api/v1"
#: hours on the meter this month, per (tenant, user, meter kind): acme stays under its tier's
#: compute cap (servers still start) and goes beyond its federated client-hours (billed)
HOURS = {
    ("acme", "alice", "cpu_seconds"): 300,
    ("acme", "dave", "cpu_seconds"): 40,
    ("acme", "alice", "fl_client_seconds"): 1100,
    ("globex", "bob", "cpu_seconds"): 7,
}


@pytest.fixture(scope="session")
def rhub(hub_factory):
    hub = hub_factory(
        env={"FEDHUB_EXPERIMENTS_WORKERS": "1", "FEDHUB_EXPERIMENTS_WARM_UP": "1"}, keep=True
    )
    admin = hub.token("admin")
    for what, path in [
        ("the experiments service", f"{EXPERIMENTS}/quota?tenant=acme"),
        ("the billing service", f"{BILLING}/invoices"),
    ]:
        wait_for(lambda p=path: hub.api("GET", p, admin).status_code == 200, 120, 0.3, what)
    token = hub.token("alice")
    hub.experiment_ids = []
    for name in ("report run", "report run 2"):
        r = hub.api("POST", f"{EXPERIMENTS}/experiments", token, json={**TINY, "name": name})
        assert r.status_code == 201, r.text
        hub.experiment_ids.insert(0, r.json()["id"])  # newest first, as the service lists
    for exp_id in hub.experiment_ids:
        wait_for(
            lambda e=exp_id: (
                hub.api("GET", f"{EXPERIMENTS}/experiments/{e}", token).json()["status"]
                == "completed"
            ),
            180,
            0.5,
            "alice's experiments to complete",
        )
    # recorded after her experiments: beyond its client-hours, acme can submit no more
    now = utcnow()
    with db.session_scope(hub.db_url) as s:
        record(
            s,
            [
                Usage(
                    tenant,
                    kind,
                    hours * 3600,
                    now,
                    now,
                    "reports-test",
                    f"{tenant}-{user}-{kind}",
                    username=user,
                )
                for (tenant, user, kind), hours in HOURS.items()
            ],
        )
    hub.month = now.strftime("%Y-%m")
    return hub


@pytest.fixture
def as_user(rhub, monkeypatch):
    """Run notebooks in this process's kernels as ``user``: what a user's server (or the
    scheduler, for a job's owner) gives a kernel: the user's token and the services' URLs."""

    def become(user: str) -> None:
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", rhub.token(user))
        for service in ("billing", "experiments"):
            monkeypatch.setenv(f"FEDHUB_{service.upper()}_URL", f"{rhub.url}/services/{service}/")

    return become
