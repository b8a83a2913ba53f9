"""A tenant's plan history: which tier (and negotiated overrides) from which moment on.

:class:`~fedhub.tenancy.store.TenantStore` calls :func:`record_change` in the same
transaction that creates a tenant or changes its tier or overrides, so the history never
misses a change. Billing reads it (:mod:`fedhub.billing.subscriptions` prorates by day);
the tenancy writes it, so tenancy never imports billing (docs/architecture.md,
"Dependency rules"). The table keeps the name migration ``0005_billing`` gave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub.clock import get_clock
from fedhub.db.base import Base, utcnow


class Subscription(Base):
    """One change of a tenant's plan: from ``effective_at`` on, this tier and overrides."""

    __tablename__ = "fedhub_billing_subscriptions"
    __table_args__ = (Index("ix_billing_sub_tenant_at", "tenant", "effective_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    tier: Mapped[str] = mapped_column(String(63))
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    effective_at: Mapped[datetime] = mapped_column(DateTime)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(255))


def record_change(
    session: Session,
    tenant: str,
    tier: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    actor: str | None = None,
) -> Subscription:
    """Record that ``tenant`` is on ``tier`` (with ``overrides``) from ``at`` on."""
    now = get_clock().now()
    sub = Subscription(
        tenant=tenant,
        tier=tier,
        overrides=dict(overrides or {}),
        effective_at=at or now,
        recorded_at=now,
        actor=actor,
    )
    session.add(sub)
    return sub
