"""The scheduler's state changes, each one transaction: a run is claimed in the database.

* :func:`enqueue_due` inserts one run per due job at ``(job_id, scheduled_for)``, a unique
  pair (``insert_ignore``): whichever service replica, or restarted service, gets there
  first makes the row and the others insert nothing. Missed times (the service was down)
  become one run, at the first missed time (``catch_up``), or none.
* :func:`claim` moves a queued run to ``running`` with ``UPDATE ... WHERE status='queued'``:
  only one process sees one row changed, so only one executes it.
* :func:`reap_stale` marks ``failed`` a run whose process stopped saying it is alive
  (:func:`heartbeat`): a run is never re-run after a crash, because a notebook that
  sends mail or writes a table may already have done so.
* :func:`create_job` checks the tier's limits under the tenant's lock
  (``scheduled_jobs_per_tenant``, ``min_schedule_interval_minutes``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fedhub import limits, metering
from fedhub.db import insert_ignore, session_scope, tenant_lock
from fedhub.errors import InvalidRequest, QuotaExceeded
from fedhub.tiers import Tier

from . import schedule
from .models import ACTIVE, FAILED, QUEUED, RUNNING, DefaultReport, ScheduledJob, ScheduledRun

SOURCE = "scheduler"
UPGRADE_HINT = "or ask your organisation's administrator to upgrade the tier"


def new_id() -> str:
    return uuid.uuid4().hex


# -- limits -------------------------------------------------------------------------------


def check_new_job(session: Session, tenant: str, tier: Tier, cron: str, timezone: str,
                  now: datetime) -> None:  # fmt: skip
    """Refuse a job over the tier's count of jobs (the default usage report is not counted),
    or firing more often than it allows."""
    allowed = tier.scheduled_jobs_per_tenant
    defaults = select(DefaultReport.job_id).where(DefaultReport.tenant == tenant)
    used = session.scalar(select(func.count()).where(
        ScheduledJob.tenant == tenant, ScheduledJob.id.not_in(defaults))) or 0  # fmt: skip
    if used >= allowed:
        raise QuotaExceeded(
            f"your organisation has {used} of the {allowed} scheduled jobs the "
            f"{tier.display_name} tier allows (scheduled_jobs_per_tenant); delete one, "
            + UPGRADE_HINT,
            details=limits.details("scheduled_jobs_per_tenant", allowed, used, 1),
        )
    if cron:  # a job that runs once has no interval
        check_interval(cron, timezone, tier, now)


def check_kernel(kernel: str, tier: Tier) -> None:
    """Refuse a kernel the tier does not offer (its ``kernels``)."""
    if kernel not in tier.kernels:
        raise InvalidRequest(f"the {tier.display_name} tier offers the kernels "
                             f"{', '.join(tier.kernels)}, not {kernel!r}; {UPGRADE_HINT}")  # fmt: skip


def check_interval(cron: str, timezone: str, tier: Tier, now: datetime) -> None:
    minimum = tier.min_schedule_interval_minutes
    every = schedule.shortest_interval_minutes(cron, timezone, now)
    if every < minimum:
        raise QuotaExceeded(
            f"schedule {cron!r} runs every {every:g} minutes; the {tier.display_name} tier "
            f"allows at most one run every {minimum:g} minutes "
            f"(min_schedule_interval_minutes), {UPGRADE_HINT}",
            details=limits.details("min_schedule_interval_minutes", minimum, every, every),
        )


def create_job(db_url: str, tier: Tier, now: datetime, **fields) -> ScheduledJob:
    """A new job (``fields``: the model's columns), first run at its schedule's next time,
    or at its ``run_once_at`` (then ``cron`` is empty)."""
    with session_scope(db_url) as s:
        tenant_lock(s, fields["tenant"])
        check_new_job(s, fields["tenant"], tier, fields["cron"], fields["timezone"], now)
        job = ScheduledJob(
            id=new_id(),
            next_run_at=fields.get("run_once_at")
            or schedule.next_after(fields["cron"], fields["timezone"], now),
            created_at=now,
            **fields,
        )
        s.add(job)
        s.flush()
        s.expunge(job)
    return job


# -- runs ---------------------------------------------------------------------------------


def enqueue_due(db_url: str, now: datetime, catch_up: bool = True) -> list[str]:
    """Queue one run for each unpaused job whose time has come; the ids of new runs."""
    new: list[str] = []
    with session_scope(db_url) as s:
        due = s.scalars(
            select(ScheduledJob).where(
                ScheduledJob.paused.is_(False), ScheduledJob.next_run_at <= now
            )
        ).all()
        for job in due:
            following = schedule.following(job.cron, job.timezone, job.next_run_at)
            missed = following is not None and following <= now  # a once job runs, if late
            if catch_up or not missed:
                run_id = new_id()
                added = insert_ignore(s, ScheduledRun.__table__, [run_row(job, run_id, job.next_run_at, "schedule", now)],
                                      ["job_id", "scheduled_for"])  # fmt: skip
                if added:
                    new.append(run_id)
            job.next_run_at = schedule.following(job.cron, job.timezone, now)
    return new


def run_row(job: ScheduledJob, run_id: str, when: datetime, trigger: str, now: datetime) -> dict:
    return {
        "id": run_id,
        "job_id": job.id,
        "tenant": job.tenant,
        "username": job.username,
        "scheduled_for": when,
        "trigger": trigger,
        "status": QUEUED,
        "outputs": [],
        "compute_seconds": 0.0,
        "created_at": now,
    }


def run_now(db_url: str, job: ScheduledJob, now: datetime) -> ScheduledRun:
    """A manual run, queued at once (a second press in the same microsecond is one run)."""
    with session_scope(db_url) as s:
        run_id = new_id()
        insert_ignore(s, ScheduledRun.__table__, [run_row(job, run_id, now, "manual", now)],
                      ["job_id", "scheduled_for"])  # fmt: skip
        run = s.scalar(
            select(ScheduledRun).where(
                ScheduledRun.job_id == job.id, ScheduledRun.scheduled_for == now
            )
        )
        s.expunge(run)
    return run


def claim(db_url: str, worker: str, now: datetime, max_running) -> list[ScheduledRun]:
    """Claim queued runs, oldest first, within each tenant's ``max_concurrent_scheduled_runs``
    (``max_running(tenant) -> int``). The claimed runs are this worker's to execute."""
    claimed = []
    with session_scope(db_url) as s:
        waiting = set(s.scalars(select(ScheduledRun.tenant).where(ScheduledRun.status == QUEUED)))
    # read outside the claim's transaction: on SQLite it holds the database's write lock
    allowed = {tenant: max_running(tenant) for tenant in waiting}
    with session_scope(db_url) as s:
        queued = s.scalars(
            select(ScheduledRun)
            .where(ScheduledRun.status == QUEUED)
            .order_by(ScheduledRun.scheduled_for)
        ).all()
        running = dict(
            s.execute(
                select(ScheduledRun.tenant, func.count())
                .where(ScheduledRun.status == RUNNING)
                .group_by(ScheduledRun.tenant)
            ).all()
        )
        for run in queued:
            if running.get(run.tenant, 0) >= allowed.get(run.tenant, 0):
                continue
            won = s.execute(
                update(ScheduledRun)
                .where(ScheduledRun.id == run.id, ScheduledRun.status == QUEUED)
                .values(status=RUNNING, worker=worker, started_at=now, heartbeat_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                running[run.tenant] = running.get(run.tenant, 0) + 1
                s.refresh(run)
                s.expunge(run)
                claimed.append(run)
    return claimed


def heartbeat(db_url: str, worker: str, now: datetime) -> None:
    with session_scope(db_url) as s:
        s.execute(
            update(ScheduledRun)
            .where(ScheduledRun.worker == worker, ScheduledRun.status == RUNNING)
            .values(heartbeat_at=now)
        )


def reap_stale(db_url: str, now: datetime, stale_after: timedelta) -> list[ScheduledRun]:
    """Fail the runs whose process died (no heartbeat for ``stale_after``); never re-run."""
    with session_scope(db_url) as s:
        stale = s.scalars(
            select(ScheduledRun).where(
                ScheduledRun.status == RUNNING, ScheduledRun.heartbeat_at < now - stale_after
            )
        ).all()
        for run in stale:
            run.status = FAILED
            run.finished_at = now
            run.error = (
                "the scheduler stopped while this run was executing; it is not re-run "
                "(the notebook may have had effects); run it again if needed"
            )
        s.flush()
        for run in stale:
            s.expunge(run)
        return list(stale)


def finish(db_url: str, run_id: str, result, now: datetime, cpu: float, memory_gb: float) -> None:
    """Record a run's end and meter its compute, like a server's: reserved cores and memory
    of the tier's first profile times the run's time (:data:`fedhub.limits.CPU_SECONDS`)."""
    with session_scope(db_url) as s:
        run = s.get(ScheduledRun, run_id)
        run.status = result.status
        run.error = result.error
        run.error_cell = result.error_cell
        run.outputs = result.outputs
        run.compute_seconds = result.seconds
        run.finished_at = now
        record_compute(s, run, result.seconds, cpu, memory_gb, now)


def record_compute(session: Session, run: ScheduledRun, seconds: float, cpu: float,
                   memory_gb: float, now: datetime) -> int:  # fmt: skip
    """The run's meter events, once per run (the run id is the idempotency key)."""
    start = now - timedelta(seconds=seconds)
    usages = [
        metering.Usage(
            tenant=run.tenant,
            kind=kind,
            quantity=seconds * factor,
            start=start,
            end=now,
            source=SOURCE,
            idempotency_key=f"run:{run.id}:{kind}",
            username=run.username,
            attributes={"job": run.job_id, "run": run.id},
        )
        for kind, factor in (
            (limits.SERVER_SECONDS, 1.0),
            (limits.CPU_SECONDS, cpu),
            (limits.MEMORY_GB_SECONDS, memory_gb),
        )
    ]
    return metering.record(session, usages, now=now)


def active_runs(session: Session, job_id: str) -> int:
    return session.scalar(
        select(func.count()).where(ScheduledRun.job_id == job_id, ScheduledRun.status.in_(ACTIVE))
    )
