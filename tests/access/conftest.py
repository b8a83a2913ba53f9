"""A real hub with two tenants, every fedhub role in each, and their tokens.

Shared by the access tests (scopes, keys, and those of rate limits and sessions): one
hub for the package. Tokens of people come from a real login (``hub.token``, a token
that inherits the user's scopes); a service account's come from the keys API, as a
tenant admin makes them.
"""

from __future__ import annotations

import uuid

import pytest

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.operations import Billing
from fedhub.db.base import utcnow
from fedhub.metering import Usage, record
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role
from tests.harness import settled_period, wait_for

MIRROR_INTERVAL = 1.0
KEYS_API = "/hub/api/fedhub/service-accounts"
SERVICES = {
    "billing": "/services/billing/",
    "audit": "/services/audit/",
    "experiments": "/services/experiments/",
    "scheduler": "/services/scheduler/",
}
#: the demo's people of each role in the two tenants (the analyst of globex is added here)
PEOPLE = {
    Role.PLATFORM_ADMIN: {"acme": "admin", "globex": "admin"},
    Role.TENANT_ADMIN: {"acme": "acme-admin", "globex": "globex-admin"},
    Role.MEMBER: {"acme": "alice", "globex": "bob"},
    Role.ANALYST: {"acme": "dave", "globex": "gina"},
}


@pytest.fixture(scope="package")
def access_hub(hub_factory):
    hub = hub_factory(
        args=[f"--TenantAuthenticatorMixin.mirror_interval={MIRROR_INTERVAL}"], keep=True
    )
    hub.fedhub(
        "user", "add", "gina", "--tenant", "globex", "--role", "analyst", "--password", hub.password
    )
    admin = hub.token("admin")
    probes = ("billing/api/v1/invoices", "audit/api/v1/events", "experiments/api/v1/quota",
              "scheduler/api/v1/jobs")  # fmt: skip
    for probe in probes:
        path = f"/services/{probe}?tenant=acme"
        wait_for(lambda p=path: hub.api("GET", p, admin).status_code == 200, 60, what=path)
    hub.records = seed_records(hub)
    return hub


def seed_records(hub) -> dict:
    """An invoice (last month, closed) and a finished experiment of each tenant."""
    from fedhub.services.experiments.models import CANCELLED, ExperimentRun

    last = settled_period()
    with db.session_scope(hub.db_url) as s:
        for tenant, tier, user in (("acme", "professional", "alice"), ("globex", "starter", "bob")):
            subscriptions.record_change(s, tenant, tier, at=last.start)
            key = f"access-{tenant}"
            record(s, [Usage(tenant, "cpu_seconds", 3600, last.start, last.start, "t", key, user)])
    Billing(hub.db_url).close(last)
    records = {"period": last.name}
    admin = hub.token("admin")
    for tenant in ("acme", "globex"):
        r = hub.api("GET", f"/services/billing/api/v1/invoices?tenant={tenant}", admin)
        [invoice] = [i for i in r.json()["invoices"] if i["period"] == last.name]
        run_id = uuid.uuid4().hex
        with db.session_scope(hub.db_url) as s:
            s.add(
                ExperimentRun(
                    id=run_id,
                    tenant=tenant,
                    username=PEOPLE[Role.MEMBER][tenant],
                    name="seeded",
                    status=CANCELLED,
                    spec={},
                    clients=2,
                    rounds=1,
                )
            )
        records[tenant] = {"invoice": invoice["id"], "experiment": run_id,
                           **seed_scheduled_job(hub, tenant),
                           **seed_dataset_and_federation(hub, tenant)}  # fmt: skip
    return records


def seed_dataset_and_federation(hub, tenant: str) -> dict:
    """A private dataset of the tenant's, and a federation its admin made on it and cancelled
    while a draft (the tenant its only member; nothing ever trains)."""
    import base64
    import io
    import json

    import numpy as np

    admin = hub.token(PEOPLE[Role.TENANT_ADMIN][tenant])
    api = "/services/experiments/api/v1"
    buf = io.BytesIO()
    np.savez(buf, x=np.eye(8, 2, dtype=np.float32), y=np.arange(8, dtype=np.int64) % 2,
             split=(np.arange(8) % 4 == 0).astype(np.uint8))  # fmt: skip
    schema = {"features": [{"name": "a", "dtype": "float32"}, {"name": "b", "dtype": "float32"}],
              "label": {"name": "y", "num_classes": 2}}  # fmt: skip
    meta = base64.urlsafe_b64encode(json.dumps({"schema": schema}).encode()).decode()
    r = hub.api("POST", f"{api}/datasets/table-test", admin, data=buf.getvalue(),
                headers={"X-Fedhub-Dataset": meta, "Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    r = hub.api("POST", f"{api}/federations", admin,
                json={"name": "table test", "dataset": "table-test"})  # fmt: skip
    assert r.status_code == 201, r.text
    fed_id = r.json()["id"]
    # cancelled: running and cancelling it again are refused (409) whoever asks first
    r = hub.api("POST", f"{api}/federations/{fed_id}/cancel", admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled", r.text
    return {"dataset": "table-test", "federation": fed_id}


def seed_scheduled_job(hub, tenant: str) -> dict:
    """A paused job of the tenant's member, with a run that stays 'running' (its heartbeat
    is in 2100, never stale), so deleting the job is a 409, never a deletion."""
    from datetime import datetime

    from fedhub.scheduler.models import RUNNING, ScheduledJob, ScheduledRun

    job, run = uuid.uuid4().hex, uuid.uuid4().hex
    owner, later = PEOPLE[Role.MEMBER][tenant], datetime(2100, 1, 1)
    with db.session_scope(hub.db_url) as s:
        s.add(ScheduledJob(id=job, tenant=tenant, username=owner, name="seeded",
                           notebook="reports/absent.ipynb", parameters={}, cron="0 6 1 1 *",
                           timezone="UTC", timeout_seconds=60, notify=False, paused=True))  # fmt: skip
        s.add(ScheduledRun(id=run, job_id=job, tenant=tenant, username=owner, trigger="manual",
                           scheduled_for=utcnow(), status=RUNNING, worker="seeded",
                           heartbeat_at=later, outputs=[], compute_seconds=0.0))  # fmt: skip
    return {"job": job, "run": run}


def make_key(hub, admin: str, account: str, key_scopes, **body) -> dict:
    """A key of ``account`` made by the tenant admin ``admin`` through the hub API (201)."""
    r = hub.api(
        "POST", f"{KEYS_API}/{account}/keys", hub.token(admin), json={"scopes": key_scopes, **body}
    )
    assert r.status_code == 201, r.text
    return r.json()


def new_service_account(hub, tenant: str) -> str:
    """A fresh service account of ``tenant``, made by its tenant admin through the hub API."""
    name = f"{tenant}-sa-{uuid.uuid4().hex[:6]}"
    r = hub.api("POST", KEYS_API, hub.token(PEOPLE[Role.TENANT_ADMIN][tenant]), json={"name": name})
    assert r.status_code == 201, r.text
    return name


@pytest.fixture(scope="package")
def service_accounts(access_hub):
    """One service account per tenant, with a key holding all of the role's scopes."""
    accounts = {}
    for tenant in ("acme", "globex"):
        name = new_service_account(access_hub, tenant)
        full = sorted(scopes.scope(p) for p in scopes.ROLE_PERMISSIONS[Role.SERVICE_ACCOUNT])
        key = make_key(access_hub, PEOPLE[Role.TENANT_ADMIN][tenant], name, full)
        accounts[tenant] = {"name": name, "token": key["token"]}
    return accounts


def service_env(hub, service: str) -> dict:
    """The environment the hub gave a running service (its OAuth client id, secret, callback)."""
    import psutil

    proc = next(
        p
        for p in psutil.Process(hub.proc.pid).children(recursive=True)
        if f"fedhub.services.{service}" in " ".join(p.cmdline())
    )
    return proc.environ()
