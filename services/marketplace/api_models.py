"""What the marketplace API takes and returns, as pydantic models for its OpenAPI document.

Amounts are decimal strings ("49.99"), never floats. The fuzzing test
(``tests/access/test_fuzz.py``) checks every response against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from fedhub.openapi import QueryModel

Amount = Annotated[str, Field(description="a decimal number as a string")]
AssetTypeName = Literal["algorithm", "model", "dataset", "notebook"]


class SearchQuery(QueryModel):
    q: str | None = Field(None, description="words to find in name, description and tags")
    type: AssetTypeName | None = None
    category: str | None = None
    licence: Literal["free", "academic", "commercial", "custom"] | None = None
    min_price: str | None = Field(None, description="a decimal, e.g. 10.00")
    max_price: str | None = Field(None, description="a decimal, e.g. 99.99")
    min_rating: str | None = Field(None, description="1-5")
    sort: Literal["relevance", "rating", "downloads", "newest"] | None = None
    limit: int | None = Field(None, description="1-100 (default 20)")
    offset: int | None = Field(None, description="0-100000")


class AssetsQuery(QueryModel):
    state: Literal["pending_review"] | None = Field(
        None, description="platform admins: what waits for review, with the source to read"
    )


class TenantQuery(QueryModel):
    tenant: str | None = Field(None, description="platform admins: the tenant")


class CheckQuery(QueryModel):
    ref: str = Field(description="market/<slug>@<version>")
    tenant: str | None = Field(None, description="hub services and platform admins: the tenant")
    user: str | None = Field(None, description="hub services and platform admins: the user")


class ContentQuery(QueryModel):
    version: str | None = Field(None, description="default: the licensed version")


class Version(BaseModel):
    version: str
    sha256: str
    filename: str
    size: int
    schema_: dict[str, Any] | None = Field(
        None,
        alias="schema",
        description="datasets: format, rows, columns (name, dtype), label_column, "
        "num_classes and the default partition; null for other types",
    )
    changelog: str
    state: str
    review_note: str | None
    created_at: str | None
    review_request: int | None = None


class AssetRow(BaseModel):
    slug: str
    name: str
    asset_type: str
    category: str
    description: str
    tags: list[str]
    licence: str
    licence_text: str | None
    price: Amount
    pricing: str
    currency: str
    per_seat: bool
    publisher: str
    state: str
    review_note: str | None
    rating: float
    rating_count: int
    downloads: int
    created_at: str | None
    listed_at: str | None


class Asset(AssetRow):
    versions: list[Version] = []
    description_html: str | None = Field(None, description="the description, rendered safely")
    review_request: int | None = None


class SearchPage(BaseModel):
    assets: list[AssetRow]
    next_offset: int | None


class Pending(BaseModel):
    asset: AssetRow
    version: Version
    source: str | None = Field(description="an algorithm's or notebook's text, to read")


class AssetList(BaseModel):
    assets: list[AssetRow] = []
    pending: list[Pending] = []


class NewAsset(BaseModel):
    name: str
    asset_type: AssetTypeName
    slug: str | None = None
    category: str | None = None
    description: str | None = Field(None, description="Markdown")
    tags: list[str] | None = None
    licence: str | dict[str, str] | None = Field(
        None, description='free, academic, commercial, or {"custom": "<text>"}'
    )
    price: Amount | None = None
    pricing: Literal["one_off", "monthly"] | None = None
    per_seat: bool | None = None
    version: str | None = Field(None, description="default 1.0.0")
    filename: str
    content: str | None = Field(None, description="the file's text (UTF-8)")
    content_base64: str | None = Field(None, description="or the file's bytes, base64")
    changelog: str | None = None
    label_column: str | None = Field(
        None, description="datasets: the label column (default: the last column; npz: y)"
    )
    partition: dict[str, Any] | str | None = Field(
        None,
        description='datasets: the default partition, {"name": "<partitioner>", ...params} '
        '(default {"name": "dirichlet", "alpha": 0.5})',
    )


class NewVersion(BaseModel):
    version: str
    filename: str
    content: str | None = None
    content_base64: str | None = None
    changelog: str | None = None
    label_column: str | None = None
    partition: dict[str, Any] | str | None = None


class ReviewDecision(BaseModel):
    version: str
    decision: Literal["approve", "reject"]
    note: str | None = Field(None, description="required to reject")


class Reviewed(BaseModel):
    asset: AssetRow
    version: Version
    request: int


class Delist(BaseModel):
    note: str | None = None


class PurchaseRequest(BaseModel):
    version: str | None = Field(None, description="default: the newest approved version")
    seat: str | None = Field(None, description="per-seat licences: the user (default: you)")


class Purchase(BaseModel):
    id: int
    tenant: str
    username: str
    asset: str
    version: str
    amount: Amount
    currency: str
    pricing: str
    seat: str | None
    state: str
    credit_note: str | None
    created_at: str | None
    reference: str


class Refund(BaseModel):
    reason: str | None = None


class Revoke(BaseModel):
    reason: str


class Entitlement(BaseModel):
    id: int
    tenant: str
    username: str | None
    asset: str
    asset_type: str
    version: str
    purchase: int
    state: str
    created_at: str | None
    ended_at: str | None
    reference: str


class Entitlements(BaseModel):
    entitlements: list[Entitlement]


class Check(BaseModel):
    asset: str
    version: str
    sha256: str
    entitlement: int | None = None
    own: bool | None = None


class NewReview(BaseModel):
    stars: int = Field(ge=1, le=5)
    text: str | None = None


class Answer(BaseModel):
    text: str


class ReviewRow(BaseModel):
    id: int
    username: str
    tenant: str
    stars: int
    text: str
    answer: str | None
    answered_at: str | None
    created_at: str | None


class Reviews(BaseModel):
    asset: str
    rating: float
    count: int
    reviews: list[ReviewRow]


class PayoutLine(BaseModel):
    id: int
    tenant: str
    period: str
    purchase: int
    statement: int | None = Field(description="the payout statement that pays it")
    asset: str
    buyer: str
    kind: str
    gross: Amount
    share_percent: Amount
    amount: Amount
    created_at: str | None


class Sales(BaseModel):
    sales: list[PayoutLine]


class Statement(BaseModel):
    id: int
    period: str
    tenant: str
    state: Literal["open", "closed", "paid"] = Field(
        description="open while its month runs; closed (total frozen) after; paid"
    )
    gross: Amount
    amount: Amount = Field(description="the publisher's share")
    platform_fee: Amount = Field(description="gross minus the publisher's share")
    currency: str
    closed_at: str | None
    paid_at: str | None
    paid_by: str | None
    paid_reference: str | None
    lines: list[PayoutLine]


class PayoutsQuery(QueryModel):
    tenant: str | None = Field(None, description="platform admins: one publisher (default: all)")
    state: Literal["open", "closed", "paid"] | None = None


class MarkPaid(BaseModel):
    reference: str = Field(description="the payment's reference (a transfer id), 1-200 chars")


class Payouts(BaseModel):
    statements: list[Statement]
