"""Billing tables (migration ``0005_billing``).

Finalized invoices are immutable twice over: :func:`guard_finalized` refuses an
ORM flush that changes one, and database triggers (created by the migration)
refuse ``UPDATE``/``DELETE`` of a finalized invoice or its lines, so even a hand-
written SQL statement cannot edit what a customer was sent.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from fedhub.billing.money import DecimalText
from fedhub.db.base import Base, utcnow

DRAFT = "draft"
FINALIZED = "finalized"


class ImmutableInvoice(Exception):
    """Raised when code tries to change a finalized invoice (a bug: issue a credit note)."""


class Invoice(Base):
    __tablename__ = "fedhub_billing_invoices"
    __table_args__ = (UniqueConstraint("tenant", "period_start", name="uq_billing_invoice_period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    period_start: Mapped[datetime] = mapped_column(DateTime)
    period_end: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    number: Mapped[str | None] = mapped_column(String(64), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    total: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal("0.00"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    rated_at: Mapped[datetime | None] = mapped_column(DateTime)
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime)
    content_sha256: Mapped[str | None] = mapped_column(String(64))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )

    @property
    def period(self) -> str:
        return self.period_start.strftime("%Y-%m")


class InvoiceLine(Base):
    """What, how much, unit price, amount, and who caused it."""

    __tablename__ = "fedhub_billing_invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("fedhub_billing_invoices.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    line_type: Mapped[str] = mapped_column(String(16))  # base, usage, discount, adjustment
    line_key: Mapped[str] = mapped_column(String(200))  # what reconciliation compares
    meter: Mapped[str | None] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(DecimalText)
    unit: Mapped[str] = mapped_column(String(32))
    unit_price: Mapped[Decimal] = mapped_column(DecimalText)
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    included: Mapped[Decimal | None] = mapped_column(DecimalText)
    usage: Mapped[Decimal | None] = mapped_column(DecimalText)
    attribution: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class Adjustment(Base):
    """A correction of a finalized invoice found after it was sent.

    More to pay becomes a line on the tenant's next draft invoice
    (``applied_invoice_id``); less to pay becomes a :class:`CreditNote`.
    """

    __tablename__ = "fedhub_billing_adjustments"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    source_invoice_id: Mapped[int] = mapped_column(ForeignKey("fedhub_billing_invoices.id"))
    line_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500))
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    applied_invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("fedhub_billing_invoices.id"), index=True
    )
    credit_note_id: Mapped[int | None] = mapped_column(ForeignKey("fedhub_billing_credit_notes.id"))
    attribution: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CreditNote(Base):
    """Money given back against a finalized invoice (its lines are in ``lines``)."""

    __tablename__ = "fedhub_billing_credit_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("fedhub_billing_invoices.id"))
    reason: Mapped[str] = mapped_column(String(500))
    total: Mapped[Decimal] = mapped_column(DecimalText)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))


class Budget(Base):
    __tablename__ = "fedhub_billing_budgets"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    monthly_limit: Mapped[Decimal] = mapped_column(DecimalText)
    thresholds: Mapped[list[int]] = mapped_column(JSON, default=lambda: [80, 100])
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(255))


class BudgetAlert(Base):
    """One alert per tenant, period and threshold: the unique key makes it fire once."""

    __tablename__ = "fedhub_billing_budget_alerts"
    __table_args__ = (
        UniqueConstraint("tenant", "period_start", "threshold", name="uq_billing_budget_alert"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    period_start: Mapped[datetime] = mapped_column(DateTime)
    threshold: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    budget: Mapped[Decimal] = mapped_column(DecimalText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _was_finalized(obj: Invoice) -> bool:
    hist = inspect(obj).attrs.status.history
    before = hist.deleted[0] if hist.deleted else obj.status
    return before == FINALIZED


@event.listens_for(Session, "before_flush")
def guard_finalized(session: Session, _ctx, _instances) -> None:
    """Refuse any change to a finalized invoice or its lines."""
    for obj in list(session.dirty) + list(session.deleted):
        if (
            isinstance(obj, Invoice)
            and _was_finalized(obj)
            and (obj in session.deleted or session.is_modified(obj, include_collections=False))
        ):
            raise ImmutableInvoice(f"invoice {obj.number} is finalized; issue a credit note")
        if (
            isinstance(obj, InvoiceLine)
            and obj.invoice is not None
            and (obj.invoice.status == FINALIZED and obj.invoice.finalized_at is not None)
        ):
            if obj in session.deleted or session.is_modified(obj):
                raise ImmutableInvoice(
                    f"invoice {obj.invoice.number} is finalized; issue a credit note"
                )
    for obj in session.new:
        if isinstance(obj, InvoiceLine) and obj.invoice is not None:
            inv = obj.invoice
            if inv.id is not None and _was_finalized(inv):
                raise ImmutableInvoice(f"invoice {inv.number} is finalized; issue a credit note")
