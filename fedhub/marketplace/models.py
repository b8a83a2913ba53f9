"""Marketplace tables (migrations ``0025_marketplace`` and ``0026_marketplace_more``).

An **asset** (algorithm, model, dataset or notebook) belongs to its publisher's tenant
(``tenant``). Its **versions** are immutable and content-addressed (SHA-256 of the
content); a new asset or version starts ``pending_review``. A **purchase** is unique per
buyer tenant and ``Idempotency-Key``; it makes one **entitlement** (the buyer's tenant, or
one of its users for a per-seat licence), one charge on the buyer's bill (a ``marketplace``
meter event, :mod:`fedhub.marketplace.billing`) and one **payout line** on the
publisher's statement. **Reviews**: one per user per asset.

Row-level security (PostgreSQL, :mod:`fedhub.db.rls`): a listed asset (and its listed
versions and reviews) is readable by every tenant; a pending or rejected one by its
publisher's tenant (and the platform); a delisted one also by the tenants that hold a
licence for it. Purchases and entitlements are the buyer's rows, payout lines the
publisher's. Nothing is written across tenants except as platform work (a purchase
writes the buyer's rows and the publisher's payout line in one transaction).
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.billing.money import DecimalText
from fedhub.db.base import Base, utcnow


class AssetType(enum.StrEnum):
    ALGORITHM = "algorithm"
    MODEL = "model"
    DATASET = "dataset"
    NOTEBOOK = "notebook"


class State(enum.StrEnum):
    """An asset's or a version's place in review (the ``marketplace_publish`` workflow)."""

    PENDING_REVIEW = "pending_review"
    LISTED = "listed"
    REJECTED = "rejected"
    DELISTED = "delisted"  # assets only: no new sales, existing licences keep working


class Pricing(enum.StrEnum):
    ONE_OFF = "one_off"
    MONTHLY = "monthly"


class EntitlementState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    REFUNDED = "refunded"


STANDARD_LICENCES = ("free", "academic", "commercial")


class Asset(Base):
    __tablename__ = "fedhub_market_assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the publisher's tenant (slug)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    asset_type: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(63), default="general")
    #: Markdown, shown rendered and sanitised (never as raw HTML)
    description: Mapped[str] = mapped_column(Text, default="")
    #: normalised tags, space separated (what full-text search reads)
    tags: Mapped[str] = mapped_column(String(500), default="")
    #: ``free``, ``academic``, ``commercial`` or the custom licence's text
    licence: Mapped[str] = mapped_column(Text, default="free")
    price: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal("0.00"))
    #: the price in cents, an integer the database compares (search's price range)
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    pricing: Mapped[str] = mapped_column(String(16), default=Pricing.ONE_OFF.value)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    #: a licence for one user of the buying tenant rather than the whole tenant
    per_seat: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=State.PENDING_REVIEW.value)
    review_note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    listed_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    downloads: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    #: ``rating_sum / rating_count`` kept with the row, so search can filter and sort on it
    rating: Mapped[float] = mapped_column(Float, default=0.0)


class Version(Base):
    """One immutable version: its content and its SHA-256 never change once written."""

    __tablename__ = "fedhub_market_versions"
    __table_args__ = (UniqueConstraint("asset_id", "version", name="uq_market_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("fedhub_market_assets.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    changelog: Mapped[str] = mapped_column(Text, default="")
    #: a dataset's columns, rows, label and default partition (0026, :mod:`.datasets`)
    data_schema: Mapped[dict | None] = mapped_column("schema", JSON)
    state: Mapped[str] = mapped_column(String(16), default=State.PENDING_REVIEW.value)
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(255))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Purchase(Base):
    """One purchase, unique per buyer tenant and Idempotency-Key: retries return it."""

    __tablename__ = "fedhub_market_purchases"
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key", name="uq_market_purchase_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the buyer's tenant
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    asset_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_assets.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_versions.id"))
    publisher: Mapped[str] = mapped_column(String(63))
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    pricing: Mapped[str] = mapped_column(String(16))
    seat: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="completed")  # or refunded
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime)
    credit_note: Mapped[str | None] = mapped_column(String(64))


class Entitlement(Base):
    """A licence: the buyer's tenant (``username`` None) or one of its users (per seat)."""

    __tablename__ = "fedhub_market_entitlements"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    username: Mapped[str | None] = mapped_column(String(255))
    asset_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_assets.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_versions.id"))
    purchase_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_purchases.id"))
    state: Mapped[str] = mapped_column(String(16), default=EntitlementState.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


class Review(Base):
    """One per user per asset, 1-5 stars; the publisher may answer once."""

    __tablename__ = "fedhub_market_reviews"
    __table_args__ = (UniqueConstraint("asset_id", "username", name="uq_market_review_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(
        ForeignKey("fedhub_market_assets.id", ondelete="CASCADE"), index=True
    )
    #: the reviewer's tenant
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    stars: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(255))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PayoutLine(Base):
    """The publisher's share of one sale (or its reversal) in one billing period."""

    __tablename__ = "fedhub_market_payout_lines"
    __table_args__ = (
        UniqueConstraint("purchase_id", "kind", "period_start", name="uq_market_payout_line"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the publisher's tenant
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    #: the month of the charge (a refund: of the sale) it shares
    period_start: Mapped[datetime] = mapped_column(DateTime)
    #: the statement that pays it: its month's, or the first open one once that is closed
    statement_id: Mapped[int | None] = mapped_column(
        ForeignKey("fedhub_market_payout_statements.id"), index=True
    )
    purchase_id: Mapped[int] = mapped_column(ForeignKey("fedhub_market_purchases.id"))
    asset_slug: Mapped[str] = mapped_column(String(63))
    buyer: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))  # sale, renewal, refund
    gross: Mapped[Decimal] = mapped_column(DecimalText)
    share_percent: Mapped[Decimal] = mapped_column(DecimalText)
    amount: Mapped[Decimal] = mapped_column(DecimalText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StatementState(enum.StrEnum):
    OPEN = "open"  # lines are still added
    CLOSED = "closed"  # its month is over: total frozen, to be paid
    PAID = "paid"  # a platform admin paid it out (with a reference)


class PayoutStatement(Base):
    """A publisher's statement of one billing month (migration ``0026_marketplace_more``).

    Open while lines are added; the service closes it once its month is over (the total
    is frozen then); a platform admin marks a closed statement paid. A line that arrives
    for a closed month (a late refund) goes on the publisher's current open statement.
    """

    __tablename__ = "fedhub_market_payout_statements"
    __table_args__ = (
        UniqueConstraint("tenant", "period_start", name="uq_market_payout_statement"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the publisher's tenant
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    period_start: Mapped[datetime] = mapped_column(DateTime)
    state: Mapped[str] = mapped_column(String(16), default=StatementState.OPEN.value)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    #: frozen when the statement is closed (None while open: summed from its lines)
    gross: Mapped[Decimal | None] = mapped_column(DecimalText)
    amount: Mapped[Decimal | None] = mapped_column(DecimalText)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime)
    paid_by: Mapped[str | None] = mapped_column(String(255))
    paid_reference: Mapped[str | None] = mapped_column(String(200))
