"""Invoices: drafts while a period's grace lasts, then finalized and never edited again.

The life of one tenant's month:

1. the month ends; :func:`close_period` rates it into a **draft** (re-rated on every
   close, so usage arriving during the grace period lands on it);
2. ``grace_days`` after the month ended, the next close **finalizes** it: it gets a
   number and a SHA-256 of its content, and triggers in the database refuse any
   change to it from then on;
3. usage for that month that arrives later (a late event inside the ingest window,
   a producer catching up) is found by :func:`reconcile`: the month is re-rated and
   compared with what was invoiced. More to pay becomes a line on the tenant's next
   draft invoice; less to pay becomes a **credit note**. Reconciling twice changes
   nothing, because earlier adjustments count as already invoiced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fedhub.billing.models import (
    DRAFT,
    FINALIZED,
    Adjustment,
    CreditNote,
    Invoice,
    InvoiceLine,
)
from fedhub.billing.money import ZERO, cents, dec
from fedhub.billing.periods import Period, containing
from fedhub.billing.rating import SHARED, LineSpec, rate
from fedhub.billing.settings import BillingSettings
from fedhub.errors import Conflict, InvalidRequest, NotFound
from fedhub.metering import MeterEvent
from fedhub.tenancy import teams
from fedhub.tiers import TierCatalog

log = logging.getLogger("fedhub.billing")

# events recorded this long before a finalization are still re-checked (commit races)
RECONCILE_MARGIN = timedelta(minutes=5)


def invoice_number(tenant: str, period: Period) -> str:
    return f"{tenant.upper()}-{period.name}"


def get_invoice(session: Session, tenant: str, period: Period) -> Invoice | None:
    return session.scalar(
        select(Invoice)
        .options(selectinload(Invoice.lines))
        .where(Invoice.tenant == tenant, Invoice.period_start == period.start)
    )


def _draft(session: Session, tenant: str, period: Period, currency: str, now: datetime) -> Invoice:
    inv = get_invoice(session, tenant, period)
    if inv is not None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(Invoice.id).where(Invoice.id == inv.id).with_for_update())
            session.refresh(inv)
        return inv
    try:
        with session.begin_nested():
            inv = Invoice(
                tenant=tenant,
                period_start=period.start,
                period_end=period.end,
                status=DRAFT,
                currency=currency,
                total=ZERO,
                created_at=now,
            )
            session.add(inv)
    except IntegrityError:  # another closer created it first: use theirs
        inv = get_invoice(session, tenant, period)
    return inv


def _line(spec: LineSpec, position: int) -> InvoiceLine:
    return InvoiceLine(
        position=position,
        line_type=spec.line_type,
        line_key=spec.key,
        meter=spec.meter,
        description=spec.description,
        quantity=spec.quantity,
        unit=spec.unit,
        unit_price=spec.unit_price,
        amount=spec.amount,
        included=spec.included,
        usage=spec.usage,
        attribution=spec.attribution,
    )


def rerate(session: Session, inv: Invoice, catalog: TierCatalog, now: datetime) -> Invoice:
    """Replace a draft's lines with a fresh rating plus pending late-usage adjustments."""
    if inv.status != DRAFT:
        raise Conflict(f"invoice {inv.number} is finalized; issue a credit note")
    period = containing(inv.period_start)
    rating = rate(session, inv.tenant, period, catalog)
    inv.lines.clear()
    session.flush()
    specs = list(rating.lines)
    pending = session.scalars(
        select(Adjustment)
        .where(
            Adjustment.tenant == inv.tenant,
            Adjustment.credit_note_id.is_(None),
            (Adjustment.applied_invoice_id.is_(None)) | (Adjustment.applied_invoice_id == inv.id),
        )
        .order_by(Adjustment.id)
    ).all()
    for adj in pending:
        source = session.get(Invoice, adj.source_invoice_id)
        if source.period_start >= inv.period_start:
            continue  # only earlier periods' corrections move forward
        adj.applied_invoice_id = inv.id
        specs.append(
            LineSpec(
                "adjustment",
                None,
                adj.description,
                Decimal(1),
                "item",
                adj.amount,
                adj.amount,
                f"adjustment:{adj.id}",
                attribution=adj.attribution,
            )
        )
    inv.lines.extend(_line(s, i) for i, s in enumerate(specs))
    inv.total = sum((s.amount for s in specs), ZERO)
    inv.rated_at = now
    session.flush()
    return inv


def content_hash(inv: Invoice) -> str:
    doc = {
        "tenant": inv.tenant,
        "period": inv.period,
        "total": str(inv.total),
        "lines": [
            [ln.line_key, ln.description, str(ln.quantity), str(ln.unit_price), str(ln.amount)]
            for ln in inv.lines
        ],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def finalize(session: Session, inv: Invoice, now: datetime) -> Invoice:
    session.flush()  # lines first: the database refuses lines on a finalized invoice
    inv.number = invoice_number(inv.tenant, containing(inv.period_start))
    inv.content_sha256 = content_hash(inv)
    inv.status = FINALIZED
    inv.finalized_at = now
    session.flush()
    log.info("Finalized invoice %s: %s %s", inv.number, inv.total, inv.currency)
    return inv


def close_period(
    session: Session,
    tenant: str,
    period: Period,
    *,
    catalog: TierCatalog,
    settings: BillingSettings,
    now: datetime,
) -> Invoice | None:
    """Draft (or re-rate) ``tenant``'s invoice for an ended period; finalize after grace.

    Idempotent: closing again re-rates a draft, and leaves a finalized invoice as is.
    Returns None when the tenant had no subscription in the period.
    """
    if now < period.end:
        raise InvalidRequest(
            f"period {period} is still open; it can be closed from {period.end:%Y-%m-%d} UTC"
        )
    reconcile(session, tenant, catalog, now=now)
    inv = get_invoice(session, tenant, period)
    if inv is not None and inv.status == FINALIZED:
        return inv
    if inv is None:
        probe = rate(session, tenant, period, catalog)
        if not probe.segments:
            return None
    inv = _draft(session, tenant, period, settings.currency, now)
    if inv.status == FINALIZED:
        return inv
    rerate(session, inv, catalog, now)
    if now >= period.end + settings.grace:
        finalize(session, inv, now)
    return inv


def has_late_usage(session: Session, inv: Invoice) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    MeterEvent.tenant == inv.tenant,
                    MeterEvent.start >= inv.period_start,
                    MeterEvent.start < inv.period_end,
                    MeterEvent.recorded_at > inv.finalized_at - RECONCILE_MARGIN,
                )
            )
        )
    )


def reconcile(
    session: Session, tenant: str, catalog: TierCatalog, *, now: datetime
) -> list[Adjustment]:
    """Turn usage that reached finalized invoices late into adjustments (see module doc)."""
    created: list[Adjustment] = []
    finalized = session.scalars(
        select(Invoice)
        .options(selectinload(Invoice.lines))
        .where(Invoice.tenant == tenant, Invoice.status == FINALIZED)
        .order_by(Invoice.period_start)
    ).all()
    for inv in finalized:
        if not has_late_usage(session, inv):
            continue
        created += _reconcile_invoice(session, inv, catalog, now)
    return created


def _reconcile_invoice(
    session: Session, inv: Invoice, catalog: TierCatalog, now: datetime
) -> list[Adjustment]:
    rating = rate(session, inv.tenant, containing(inv.period_start), catalog)
    billed: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in inv.lines:
        if line.line_type != "adjustment":
            billed[line.line_key] += line.amount
    for adj in session.scalars(select(Adjustment).where(Adjustment.source_invoice_id == inv.id)):
        billed[adj.line_key] += adj.amount
    fresh = {spec.key: spec for spec in rating.lines}
    created: list[Adjustment] = []
    for key in sorted(set(fresh) | set(billed)):
        spec = fresh.get(key)
        delta = (spec.amount if spec else ZERO) - billed[key]
        if not delta:
            continue
        what = spec.description if spec else key
        adj = Adjustment(
            tenant=inv.tenant,
            source_invoice_id=inv.id,
            line_key=key,
            description=f"Correction of {inv.number}: {what}",
            amount=delta,
            created_at=now,
            attribution=spec.attribution if spec else {},
        )
        session.add(adj)
        created.append(adj)
    credits = [a for a in created if a.amount < 0]
    if credits:
        note = _credit_note(
            session,
            inv,
            "usage corrected after the invoice was finalized",
            [{"description": a.description, "amount": str(-a.amount)} for a in credits],
            now=now,
            actor="fedhub-billing",
        )
        for a in credits:
            a.credit_note_id = note.id
    session.flush()
    if created:
        log.info("Invoice %s: %d late-usage adjustment(s)", inv.number, len(created))
    return created


def _credit_note(
    session: Session,
    inv: Invoice,
    reason: str,
    lines: list[dict[str, Any]],
    *,
    now: datetime,
    actor: str | None,
) -> CreditNote:
    count = session.scalar(
        select(func.count()).select_from(CreditNote).where(CreditNote.tenant == inv.tenant)
    )
    note = CreditNote(
        number=f"CN-{inv.tenant.upper()}-{count + 1:04d}",
        tenant=inv.tenant,
        invoice_id=inv.id,
        reason=reason,
        total=sum((dec(x["amount"]) for x in lines), ZERO),
        lines=lines,
        created_at=now,
        created_by=actor,
    )
    session.add(note)
    session.flush()
    return note


def credited(session: Session, invoice_id: int) -> Decimal:
    notes = session.scalars(select(CreditNote.total).where(CreditNote.invoice_id == invoice_id))
    return sum(notes, ZERO)


def issue_credit_note(
    session: Session,
    invoice_id: int,
    amount: Decimal,
    reason: str,
    *,
    now: datetime,
    actor: str | None = None,
) -> CreditNote:
    """A manual correction of a finalized invoice (a goodwill credit, a billing error)."""
    inv = session.get(Invoice, invoice_id)
    if inv is None:
        raise NotFound(f"no invoice {invoice_id}")
    if inv.status != FINALIZED:
        raise Conflict(
            f"invoice {invoice_id} is still a draft: fix the usage or price and close again"
        )
    amount = cents(dec(amount))
    if amount <= 0:
        raise InvalidRequest("a credit note's amount must be positive")
    available = inv.total - credited(session, inv.id)
    if amount > available:
        raise InvalidRequest(f"at most {available} can still be credited on {inv.number}")
    if not reason.strip():
        raise InvalidRequest("a credit note needs a reason")
    return _credit_note(
        session, inv, reason, [{"description": reason, "amount": str(amount)}], now=now, actor=actor
    )


#: by_team's key for users in no team (team names are [a-z0-9-]: no clash)
NO_TEAM = "(no team)"


def by_team(lines: list[dict[str, Any]], team_of: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each team's share of an invoice: the amounts and usage its members' attribution
    carries, summed per team (``team_of``: username -> team). Users in no team are
    ``(no team)``, the base fee and what no user caused ``(shared)``; the amounts add up
    to the invoice's total."""
    amounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    usage: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for line in lines:
        for user, share in (line.get("attribution") or {}).get("users", {}).items():
            team = SHARED if user == SHARED else team_of.get(user, NO_TEAM)
            if share.get("amount") is not None:
                amounts[team] += Decimal(share["amount"])
            if line["type"] == "usage" and share.get("usage") is not None:
                usage[team][line["meter"]] += Decimal(share["usage"])
    return {
        team: {
            "amount": str(amounts[team]),
            "usage": {meter: str(q) for meter, q in sorted(usage[team].items())},
        }
        for team in sorted(set(amounts) | set(usage))
    }


def invoice_document(session: Session, inv: Invoice) -> dict[str, Any]:
    """An invoice as JSON-ready data (what the API returns and the templates render).

    ``by_team`` splits it by the tenant's teams as they are when the document is made
    (:func:`by_team`; docs/organisations.md)."""
    notes = session.scalars(
        select(CreditNote).where(CreditNote.invoice_id == inv.id).order_by(CreditNote.id)
    ).all()
    lines = [
        {
            "type": ln.line_type,
            "meter": ln.meter,
            "description": ln.description,
            "quantity": str(ln.quantity),
            "unit": ln.unit,
            "unit_price": str(ln.unit_price),
            "amount": str(ln.amount),
            "included": None if ln.included is None else str(ln.included),
            "usage": None if ln.usage is None else str(ln.usage),
            "attribution": ln.attribution,
        }
        for ln in inv.lines
    ]
    return {
        "id": inv.id,
        "number": inv.number,
        "tenant": inv.tenant,
        "period": inv.period,
        "period_start": inv.period_start.isoformat(),
        "period_end": inv.period_end.isoformat(),
        "status": inv.status,
        "currency": inv.currency,
        "total": str(inv.total),
        "created_at": inv.created_at.isoformat(),
        "rated_at": inv.rated_at.isoformat() if inv.rated_at else None,
        "finalized_at": inv.finalized_at.isoformat() if inv.finalized_at else None,
        "content_sha256": inv.content_sha256,
        "lines": lines,
        "by_team": by_team(lines, teams.teams_by_user(session, inv.tenant)),
        "credit_notes": [
            {
                "number": n.number,
                "total": str(n.total),
                "reason": n.reason,
                "lines": n.lines,
                "created_at": n.created_at.isoformat(),
            }
            for n in notes
        ],
    }
