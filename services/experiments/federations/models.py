"""The federations' tables: a federation, who may see it, its members, its rounds.

A federation belongs to the tenant that created it (``tenant``) and is visible to every
tenant it invited: :class:`FederationTenant` lists them (owner, members, invitees, the
declined included), one row per tenant, and is what the row-level security policies of
the other tables look up (``fedhub.db.rls.TENANT_TABLES``):

- ``fedhub_federation_tenants``: a tenant sees its own rows only;
- ``fedhub_federations``, ``fedhub_federation_members``, ``fedhub_federation_rounds``:
  visible to the tenants listed for the federation (the owner also by its own column);
- ``fedhub_federation_member_metrics``: a member's evaluation on its own test data,
  visible to that member only.

Member states: ``invited`` → ``joined`` (a dataset bound) | ``declined``. Federation
states: ``draft`` → ``running`` → ``finished`` | ``failed`` | ``cancelled`` |
``stopped_budget`` (the next round would have spent more ε than the budget).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.db.base import Base, utcnow

# federation states
DRAFT, RUNNING, FINISHED, FAILED, CANCELLED, STOPPED_BUDGET = (
    "draft",
    "running",
    "finished",
    "failed",
    "cancelled",
    "stopped_budget",
)
ENDED = (FINISHED, FAILED, CANCELLED, STOPPED_BUDGET)

# member states
INVITED, JOINED, DECLINED = "invited", "joined", "declined"


class Federation(Base):
    __tablename__ = "fedhub_federations"
    __table_args__ = (
        Index("ix_federations_tenant_created", "tenant", "created_at"),
        Index("ix_federations_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))  # the owner (the creator's tenant)
    name: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    task: Mapped[dict[str, Any]] = mapped_column(JSON)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    privacy: Mapped[dict[str, Any]] = mapped_column(JSON)
    rounds: Mapped[int] = mapped_column(Integer)
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    epsilon: Mapped[float | None] = mapped_column(Float)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    run_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    def to_json(self, members: list[dict] | None = None) -> dict[str, Any]:
        out = {
            "id": self.id,
            "name": self.name,
            "owner": self.tenant,
            "created_by": self.created_by,
            "status": self.status,
            "task": self.task,
            "schema": self.schema,
            "privacy": self.privacy,
            "rounds": self.rounds,
            "rounds_done": self.rounds_done,
            "epsilon": self.epsilon,
            "cancel_requested": self.cancel_requested,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }
        if members is not None:
            out["members"] = members
        return out


class FederationTenant(Base):
    """A tenant a federation is visible to (the policies' lookup table)."""

    __tablename__ = "fedhub_federation_tenants"

    federation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fedhub_federations.id", ondelete="CASCADE"), primary_key=True
    )
    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)


class FederationMember(Base):
    __tablename__ = "fedhub_federation_members"
    __table_args__ = (
        UniqueConstraint("federation_id", "tenant", name="uq_federation_member_tenant"),
        UniqueConstraint("federation_id", "member_id", name="uq_federation_member_id"),
        Index("ix_federation_members_tenant", "tenant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    federation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fedhub_federations.id", ondelete="CASCADE")
    )
    tenant: Mapped[str] = mapped_column(String(63))
    member_id: Mapped[int] = mapped_column(Integer)  # the coordinator's id, 1 = the owner
    state: Mapped[str] = mapped_column(String(16), default=INVITED)
    dataset: Mapped[str | None] = mapped_column(String(255))  # "<name>@<version>" once bound
    invited_by: Mapped[str] = mapped_column(String(255))
    invited_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    responded_by: Mapped[str | None] = mapped_column(String(255))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime)

    def to_json(self, viewer: str | None) -> dict[str, Any]:
        """What every party sees of a member; its dataset only to itself (and the platform)."""
        out = {
            "tenant": self.tenant,
            "member_id": self.member_id,
            "state": self.state,
            "invited_at": _iso(self.invited_at),
            "responded_at": _iso(self.responded_at),
        }
        if viewer is None or viewer == self.tenant:
            out["dataset"] = self.dataset
        return out


class FederationRound(Base):
    """One round's aggregate record, the same for every member."""

    __tablename__ = "fedhub_federation_rounds"
    __table_args__ = (UniqueConstraint("federation_id", "round", name="uq_federation_round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    federation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fedhub_federations.id", ondelete="CASCADE")
    )
    round: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FederationMemberMetrics(Base):
    """One member's own evaluation of one round, visible to that member only."""

    __tablename__ = "fedhub_federation_member_metrics"
    __table_args__ = (
        UniqueConstraint("federation_id", "round", "tenant", name="uq_federation_member_metrics"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    federation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fedhub_federations.id", ondelete="CASCADE")
    )
    round: Mapped[int] = mapped_column(Integer)
    tenant: Mapped[str] = mapped_column(String(63))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
