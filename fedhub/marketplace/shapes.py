"""The JSON shapes the marketplace's store answers with (the service returns them as they
are): one function a row type."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fedhub.marketplace.models import Asset, Entitlement, PayoutLine, Purchase, Review, Version


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def asset_row(a: Asset) -> dict[str, Any]:
    standard = a.licence in ("free", "academic", "commercial")
    return {
        "slug": a.slug,
        "name": a.name,
        "asset_type": a.asset_type,
        "category": a.category,
        "description": a.description,
        "tags": a.tags.split() if a.tags else [],
        "licence": a.licence if standard else "custom",
        "licence_text": None if standard else a.licence,
        "price": str(a.price),
        "pricing": a.pricing,
        "currency": a.currency,
        "per_seat": a.per_seat,
        "publisher": a.tenant,
        "state": a.state,
        "review_note": a.review_note,
        "rating": round(a.rating, 2),
        "rating_count": a.rating_count,
        "downloads": a.downloads,
        "created_at": iso(a.created_at),
        "listed_at": iso(a.listed_at),
    }


def version_json(v: Version) -> dict[str, Any]:
    return {
        "version": v.version,
        "sha256": v.sha256,
        "filename": v.filename,
        "size": v.size,
        "schema": v.data_schema,
        "changelog": v.changelog,
        "state": v.state,
        "review_note": v.review_note,
        "created_at": iso(v.created_at),
    }


def source_text(a: Asset, v: Version) -> str | None:
    """An algorithm's (or notebook's) text for the reviewer to read; None for binaries."""
    if a.asset_type in ("algorithm", "notebook"):
        return v.content.decode("utf-8", errors="replace")
    return None


def purchase_json(p: Purchase, a: Asset, v: Version) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant": p.tenant,
        "username": p.username,
        "asset": a.slug,
        "version": v.version,
        "amount": str(p.amount),
        "currency": p.currency,
        "pricing": p.pricing,
        "seat": p.seat,
        "state": p.state,
        "credit_note": p.credit_note,
        "created_at": iso(p.created_at),
        "reference": f"market/{a.slug}@{v.version}",
    }


def entitlement_json(e: Entitlement, a: Asset, v: Version) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant": e.tenant,
        "username": e.username,
        "asset": a.slug,
        "asset_type": a.asset_type,
        "version": v.version,
        "purchase": e.purchase_id,
        "state": e.state,
        "created_at": iso(e.created_at),
        "ended_at": iso(e.ended_at),
        "reference": f"market/{a.slug}@{v.version}",
    }


def review_json(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "username": r.username,
        "tenant": r.tenant,
        "stars": r.stars,
        "text": r.text,
        "answer": r.answer,
        "answered_at": iso(r.answered_at),
        "created_at": iso(r.created_at),
    }


def payout_json(p: PayoutLine) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant": p.tenant,
        "period": p.period_start.strftime("%Y-%m"),
        "purchase": p.purchase_id,
        "statement": p.statement_id,
        "asset": p.asset_slug,
        "buyer": p.buyer,
        "kind": p.kind,
        "gross": str(p.gross),
        "share_percent": str(p.share_percent),
        "amount": str(p.amount),
        "created_at": iso(p.created_at),
    }
