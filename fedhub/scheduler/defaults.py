"""Each tenant's usage report, scheduled monthly to its tenant admins by default.

The scheduler loop calls :func:`ensure_usage_reports` (``c.Scheduler.default_usage_report``).
For each active tenant that has a tenant admin and no claim yet, one transaction inserts
the claim ``(tenant, "usage")`` (``insert_ignore``: two replicas make one job between them)
and the job: the bundled report ``usage`` with ``tenant`` set, on the 1st of each month at
06:00 UTC, owned by the tenant's first tenant admin (the oldest membership; the run reads
billing as that admin). Its runs are mailed to every tenant admin (:mod:`.notify` of the
service). The job does not count against the tier's ``scheduled_jobs_per_tenant``.

Opting out: a tenant admin pauses or deletes the job. The claim outlives the job, so a
deleted one is never made again, and a paused one stays paused.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from fedhub.db import insert_ignore, session_scope
from fedhub.tenancy.models import Role, Tenant, TenantStatus

from . import schedule
from .claims import new_id
from .models import DefaultReport, ScheduledJob

REPORT = "usage"
CRON, TIMEZONE = "0 6 1 * *", "UTC"
NAME = "Monthly usage report"


def first_admin(tenant: Tenant) -> str | None:
    """The tenant's oldest tenant admin: the default report's owner."""
    admins = [m for m in tenant.memberships if m.role == Role.TENANT_ADMIN]
    return min(admins, key=lambda m: (m.created_at, m.id)).username if admins else None


def admin_emails(tenant: Tenant) -> list[str]:
    return sorted(m.email for m in tenant.memberships if m.role == Role.TENANT_ADMIN and m.email)


def claimed(db_url: str) -> set[str]:
    with session_scope(db_url) as s:
        return set(s.scalars(select(DefaultReport.tenant).where(DefaultReport.report == REPORT)))


def is_default(db_url: str, job_id: str) -> bool:
    with session_scope(db_url) as s:
        return (
            s.scalar(select(DefaultReport.tenant).where(DefaultReport.job_id == job_id)) is not None
        )


def ensure_usage_reports(db_url: str, tenants: list[Tenant], now: datetime,
                         timeout_seconds: int) -> list[ScheduledJob]:  # fmt: skip
    """Make the default report of each active tenant that never had one; the new jobs."""
    made = []
    done = claimed(db_url)
    for tenant in tenants:
        owner = first_admin(tenant)
        if tenant.slug in done or tenant.status != TenantStatus.ACTIVE or owner is None:
            continue  # a tenant without an admin yet gets its report when it has one
        job = make_once(db_url, tenant.slug, owner, now, timeout_seconds)
        if job is not None:
            made.append(job)
    return made


def make_once(db_url: str, tenant: str, owner: str, now: datetime,
              timeout_seconds: int) -> ScheduledJob | None:  # fmt: skip
    """The claim and the job in one transaction; None if the tenant's claim exists."""
    job_id = new_id()
    with session_scope(db_url) as s:
        claim = {"tenant": tenant, "report": REPORT, "job_id": job_id, "created_at": now}
        if not insert_ignore(s, DefaultReport.__table__, [claim], ["tenant", "report"]):
            return None
        job = ScheduledJob(
            id=job_id, tenant=tenant, username=owner, name=NAME, notebook=REPORT,
            parameters={"tenant": tenant}, cron=CRON, timezone=TIMEZONE,
            timeout_seconds=timeout_seconds, notify=True, paused=False,
            next_run_at=schedule.next_after(CRON, TIMEZONE, now), created_at=now,
        )  # fmt: skip
        s.add(job)
        s.flush()
        s.expunge(job)
    return job
