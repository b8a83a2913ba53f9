"""The scheduler's tables: one row per job, one row per run.

A run is claimed by inserting ``(job_id, scheduled_for)``, which is unique: two service
replicas, or a restarted service, that both find a job due insert one row between them,
so a scheduled time never runs twice (:mod:`fedhub.scheduler.claims`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.db.base import Base, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)


class ScheduledJob(Base):
    __tablename__ = "fedhub_scheduled_jobs"
    __table_args__ = (
        Index("ix_scheduled_jobs_tenant", "tenant"),
        Index("ix_scheduled_jobs_next_run", "next_run_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    notebook: Mapped[str] = mapped_column(String(1024))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: empty for a job that runs once, at ``run_once_at`` (naive UTC)
    cron: Mapped[str] = mapped_column(String(255))
    run_once_at: Mapped[datetime | None] = mapped_column(DateTime)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: the outputs its runs write (:mod:`.formats`); None: ipynb and html (jobs before 0015)
    formats: Mapped[list[str] | None] = mapped_column(JSON)
    #: a kernel of the tenant's tier; None: the notebook's own, else ``c.Scheduler.kernel``
    kernel: Mapped[str | None] = mapped_column(String(255))
    #: only the newest this many finished runs keep their outputs (:mod:`.retention`)
    keep_runs: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "user": self.username,
            "name": self.name,
            "notebook": self.notebook,
            "parameters": self.parameters,
            "cron": self.cron or None,
            "at": iso(self.run_once_at),
            "timezone": self.timezone,
            "formats": self.formats or ["ipynb", "html"],
            "kernel": self.kernel,
            "keep_runs": self.keep_runs,
            "timeout_seconds": self.timeout_seconds,
            "notify": self.notify,
            "paused": self.paused,
            "next_run_at": iso(self.next_run_at),
            "created_at": iso(self.created_at),
        }


class DefaultReport(Base):
    """The claim that a tenant's default report job was made once (``0015``): it outlives
    the job, so one a tenant admin deleted is never made again (:mod:`.defaults`)."""

    __tablename__ = "fedhub_scheduler_defaults"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    report: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ScheduledRun(Base):
    __tablename__ = "fedhub_scheduled_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_for", name="uq_scheduled_run_time"),
        Index("ix_scheduled_runs_tenant_status", "tenant", "status"),
        Index("ix_scheduled_runs_job", "job_id", "scheduled_for"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    #: the schedule's time for this run; "run now" uses the request's time
    scheduled_for: Mapped[datetime] = mapped_column(DateTime)
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    #: which service process runs it, and when that process last said it still does
    worker: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    error_cell: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    outputs: Mapped[list[str]] = mapped_column(JSON, default=list)
    compute_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job_id,
            "tenant": self.tenant,
            "user": self.username,
            "scheduled_for": iso(self.scheduled_for),
            "trigger": self.trigger,
            "status": self.status,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "error": self.error,
            "error_cell": self.error_cell,
            "outputs": list(self.outputs or []),
            "compute_seconds": self.compute_seconds,
        }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
