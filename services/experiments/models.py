"""The experiments service's tables: one row per run, one row per finished round, and
one row per version of a tenant's private dataset.

The run row is the source of truth for the scheduler (status, cancel flag, attempts), so
a restarted service knows what was running; round rows are what clients read and stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.db.base import Base, utcnow

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "queued",
    "running",
    "completed",
    "failed",
    "cancelled",
)
ACTIVE = (QUEUED, RUNNING)
FINISHED = (COMPLETED, FAILED, CANCELLED)


class ExperimentRun(Base):
    __tablename__ = "fedhub_experiments"
    __table_args__ = (
        Index("ix_experiments_tenant_created", "tenant", "created_at"),
        Index("ix_experiments_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    clients: Mapped[int] = mapped_column(Integer)
    rounds: Mapped[int] = mapped_column(Integer)
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    def to_json(self, rounds: list[dict] | None = None) -> dict[str, Any]:
        out = {
            "id": self.id,
            "tenant": self.tenant,
            "user": self.username,
            "name": self.name,
            "status": self.status,
            "spec": self.spec,
            "rounds": self.rounds,
            "rounds_done": self.rounds_done,
            "cancel_requested": self.cancel_requested,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }
        if rounds is not None:
            out["metrics"] = rounds
        return out


class ExperimentRound(Base):
    __tablename__ = "fedhub_experiment_rounds"
    __table_args__ = (UniqueConstraint("experiment_id", "round", name="uq_experiment_round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fedhub_experiments.id", ondelete="CASCADE")
    )
    round: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


class TenantDataset(Base):
    """One version of a tenant's private dataset (the files: :mod:`fedhub.datasets`).

    The row is what lists and checks read (the API, a federation's binding); the files in
    the tenant's store are the data. A deleted version loses both.
    """

    __tablename__ = "fedhub_tenant_datasets"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": f"tenant/{self.name}@{self.version}",
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema": self.schema,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
        }
