"""The tables of approval requests: ``fedhub_requests`` and ``fedhub_request_comments``.

Tenant-owned by ``tenant_id`` (row-level security on PostgreSQL, migration
``0021_approvals``); a request with no tenant (a paid-tier onboarding: the tenant does
not exist yet) is platform work only. Comments hang off their request.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedhub.db.base import Base, utcnow
from fedhub.tenancy.models import Tenant


class RequestState(enum.StrEnum):
    """``pending`` until someone decides; the other three are final."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


#: the longest reason or comment accepted (characters)
MAX_TEXT = 2000


class ApprovalRequest(Base):
    """One request of a kind (:mod:`fedhub.approvals.kinds`) waiting for, or past, a decision."""

    __tablename__ = "fedhub_requests"
    __table_args__ = (
        Index("ix_fedhub_requests_tenant_state", "tenant_id", "state"),
        # one pending tier change per tenant, also when two are asked at the same moment
        Index(
            "uq_fedhub_requests_pending_tier_change",
            "tenant_id",
            unique=True,
            sqlite_where=text("kind = 'tier_change' AND state = 'pending'"),
            postgresql_where=text("kind = 'tier_change' AND state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    # None: an onboarding (the tenant does not exist yet); set when it does
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), default=None
    )
    # a username, or an email address for someone with no account yet
    requester: Mapped[str] = mapped_column(String(320))
    requester_email: Mapped[str | None] = mapped_column(String(320), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[RequestState] = mapped_column(
        Enum(
            RequestState,
            name="request_state",
            native_enum=False,
            values_callable=lambda e: [m.value for m in e],
            length=16,
        ),
        default=RequestState.PENDING,
    )
    reason: Mapped[str | None] = mapped_column(Text, default=None)  # shown to the requester
    decided_by: Mapped[str | None] = mapped_column(String(255), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    tenant: Mapped[Tenant | None] = relationship()
    comments: Mapped[list[RequestComment]] = relationship(
        back_populates="request",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="RequestComment.id",
    )


class RequestComment(Base):
    """A comment on a request, by the requester or an approver."""

    __tablename__ = "fedhub_request_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("fedhub_requests.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    request: Mapped[ApprovalRequest] = relationship(back_populates="comments")
