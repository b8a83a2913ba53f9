"""What the billing API takes and returns, as pydantic models for its OpenAPI document.

The handlers build their JSON as they always did (amounts are decimal strings); these
models describe it, and the fuzzing test (``tests/access/test_fuzz.py``) checks every
response against them. The usage events a client sends are validated by
:mod:`fedhub.billing.ingest`'s own model, which the document shows as the request body.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, RootModel

from fedhub.billing.ingest import ExternalEvent
from fedhub.openapi import QueryModel

#: an amount of money or a quantity, as a decimal string ("12.50"): never a float
Amount = Annotated[str, Field(description="a decimal number as a string")]


class TenantQuery(QueryModel):
    tenant: str | None = Field(None, description="platform admins: the tenant (required)")


class PeriodQuery(QueryModel):
    period: str | None = Field(
        None, pattern=r"^\d{4}-\d{2}$", description="YYYY-MM; default: the current month"
    )


class TenantPeriodQuery(TenantQuery, PeriodQuery):
    pass


class PageQuery(TenantQuery):
    limit: int | None = Field(None, description="at most this many (1-500)")
    cursor: str | None = Field(None, description="the previous page's next_cursor")


class TenantUsage(BaseModel):
    """Tenant admins and platform admins: every meter and every user's cost."""

    tenant: str
    period: str
    meters: dict[str, dict[str, str]]
    estimated_total: Amount
    by_user: dict[str, Amount]


class MeterUsage(BaseModel):
    usage: Amount
    unit: str


class MemberUsage(BaseModel):
    """Members and analysts: their own usage and cost only."""

    tenant: str
    period: str
    user: str
    meters: dict[str, MeterUsage]
    cost: Amount


class Usage(RootModel[TenantUsage | MemberUsage]):
    pass


class Costs(BaseModel):
    tenant: str
    period: str
    basis: str = Field(description="estimate, or the invoice's status (draft, finalized)")
    users: dict[str, Amount]


class InvoiceRow(BaseModel):
    id: int
    number: str | None
    tenant: str
    period: str
    status: str
    total: Amount
    currency: str


class InvoicePage(BaseModel):
    invoices: list[InvoiceRow]
    next: str | None
    next_cursor: str | None


class InvoiceLine(BaseModel):
    type: str
    meter: str | None
    description: str
    quantity: Amount
    unit: str | None
    unit_price: Amount
    amount: Amount
    included: Amount | None
    usage: Amount | None
    attribution: dict[str, Any]


class InvoiceCreditNote(BaseModel):
    number: str
    total: Amount
    reason: str
    lines: list[dict[str, Any]]
    created_at: str


class InvoiceDocument(BaseModel):
    id: int
    number: str | None
    tenant: str
    period: str
    period_start: str
    period_end: str
    status: str
    currency: str
    total: Amount
    created_at: str
    rated_at: str | None
    finalized_at: str | None
    content_sha256: str | None
    lines: list[InvoiceLine]
    credit_notes: list[InvoiceCreditNote]


class CreditNoteRow(InvoiceCreditNote):
    tenant: str
    invoice: int


class CreditNotePage(BaseModel):
    credit_notes: list[CreditNoteRow]
    next: str | None
    next_cursor: str | None


class CreditNoteRequest(BaseModel):
    amount: Amount | float = Field(description="how much to credit, at most what is left")
    reason: str


class CreditNoteIssued(BaseModel):
    number: str
    total: Amount
    tenant: str


class BudgetAlert(BaseModel):
    period: str
    threshold: int
    amount: Amount
    at: str


class Budget(BaseModel):
    tenant: str
    monthly_limit: Amount | None
    thresholds: list[int]
    alerts: list[BudgetAlert]
    spent: Amount | None = None
    updated_at: str | None = None
    updated_by: str | None = None


class BudgetRequest(BaseModel):
    monthly_limit: Amount | float = Field(description="a positive amount per month")
    thresholds: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(
        None, description="percentages of the limit that raise an alert"
    )


class BudgetSet(BaseModel):
    tenant: str
    monthly_limit: Amount
    thresholds: list[int]


class TenantRevenue(BaseModel):
    status: str
    total: Amount


class MarketplaceRevenue(BaseModel):
    gross: Amount = Field(description="marketplace sales charged in the month (net of refunds)")
    publishers: Amount = Field(description="the publishers' share of them")
    platform_fee: Amount = Field(description="what the platform keeps")


class Revenue(BaseModel):
    period: str
    tenants: dict[str, TenantRevenue]
    finalized: Amount
    draft: Amount
    credited: Amount
    net: Amount
    marketplace: MarketplaceRevenue


class UsageEvents(BaseModel):
    events: list[ExternalEvent] = Field(min_length=1)


class IngestResult(BaseModel):
    received: int
    accepted: int
    duplicates: int
    received_at: str
