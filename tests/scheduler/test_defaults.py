"""Each tenant's default monthly usage report, on SQLite and PostgreSQL: made once per
tenant by the scheduler loop (``c.Scheduler.default_usage_report``) and owned by its first
tenant admin, never made twice by racing replicas, never made again after the opt-out,
outside the tier's job count, and mailed to the tenant admins through a real SMTP server."""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import select
from traitlets.config import Config

from fedhub.db import session_scope
from fedhub.mail import Mailer
from fedhub.scheduler import claims, defaults
from fedhub.scheduler.models import ScheduledJob, ScheduledRun
from fedhub.services.scheduler.loop import Scheduler
from fedhub.services.scheduler.notify import Notifier
from fedhub.tenancy.store import TenantStore
from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers

TIERS = load_tiers(DEFAULT_TIERS_PATH)
NOON = datetime(2026, 11, 30, 12, 0)


def tenants(url) -> TenantStore:
    store = TenantStore(url, TIERS)
    store.create_tenant("acme", tier="starter")
    store.add_user("ann", "acme", "tenant-admin", email="ann@acme.example")
    store.add_user("bob", "acme", "tenant-admin", email="bob@acme.example")
    store.add_user("cy", "acme", "member", email="cy@acme.example")
    store.create_tenant("globex", tier="starter")
    store.add_user("gus", "globex", "member")
    return store


def jobs(url) -> list[ScheduledJob]:
    with session_scope(url) as s:
        found = list(s.scalars(select(ScheduledJob).order_by(ScheduledJob.tenant)))
        s.expunge_all()
    return found


def scheduler(url, store, enabled: bool) -> Scheduler:
    config = Config()
    config.Scheduler.default_usage_report = enabled
    return Scheduler(url, store, tokens=None, mailer=Mailer(), config=config)


def test_each_tenant_gets_its_usage_report_once_and_not_after_opting_out(migrated_db):
    url = migrated_db
    store = tenants(url)
    scheduler(url, store, enabled=False).tick()
    assert jobs(url) == []
    loop = scheduler(url, store, enabled=True)
    loop.tick()
    [job] = jobs(url)  # globex has no tenant admin yet
    assert (job.tenant, job.username, job.notebook, job.parameters) == (
        "acme", "ann", "usage", {"tenant": "acme"})  # fmt: skip
    assert (job.cron, job.timezone, job.notify) == ("0 6 1 * *", "UTC", True)
    assert defaults.is_default(url, job.id)
    # not counted: the starter tier's one job is still free
    claims.create_job(url, TIERS.get("starter"), NOON, tenant="acme", username="cy", name="mine",
                      notebook="usage", parameters={}, cron="0 7 * * 1", timezone="UTC",
                      timeout_seconds=60, notify=False, paused=False)  # fmt: skip

    store.add_user("gina", "globex", "tenant-admin")
    loop.tick()
    assert [(j.tenant, j.username) for j in jobs(url) if j.name == defaults.NAME] == [
        ("acme", "ann"), ("globex", "gina")]  # fmt: skip

    with session_scope(url) as s:  # acme's admin opts out: deletes the job
        s.delete(s.get(ScheduledJob, job.id))
    loop.tick()
    assert [j.tenant for j in jobs(url) if j.name == defaults.NAME] == ["globex"]


def test_racing_replicas_make_one_report_per_tenant(migrated_db):
    url = migrated_db
    store = tenants(url)
    everyone = store.list_tenants()
    made, errors = [], []
    barrier = threading.Barrier(4)

    def replica():
        try:
            barrier.wait()
            made.extend(defaults.ensure_usage_reports(url, everyone, NOON, 600))
        except Exception as e:  # a failed replica must fail the test, not vanish
            errors.append(e)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [j.id for j in made] == [j.id for j in jobs(url)]
    assert len(made) == 1 and made[0].next_run_at == datetime(2026, 12, 1, 6, 0)


def test_a_finished_report_is_mailed_to_every_tenant_admin(migrated_db, smtp):
    controller, inbox = smtp
    url = migrated_db
    store = tenants(url)
    [job] = defaults.ensure_usage_reports(url, store.list_tenants(), NOON, 600)
    run = ScheduledRun(id=claims.new_id(), job_id=job.id, tenant="acme", username="ann",
                       scheduled_for=job.next_run_at, status="succeeded",
                       outputs=["notebook.ipynb", "notebook.html"])  # fmt: skip
    mailer = Mailer(smtp_host=controller.hostname, smtp_port=controller.port,
                    smtp_security="none", from_address="fedhub <noreply@hub.example>")  # fmt: skip
    notifier = Notifier(url, mailer, log=mailer.log)
    addresses = defaults.admin_emails(store.get_tenant("acme"))
    assert addresses == ["ann@acme.example", "bob@acme.example"]
    assert len(notifier.report_ready(job, run, addresses)) == 2
    for address in addresses:
        [body] = [m.get_content() for m in inbox.to(address) if run.id in m.get_content()]
        assert f"/runs/{run.id}/outputs/notebook.html" in body and job.id in body
    assert inbox.to("cy@acme.example") == []  # a member is not sent the tenant's report
