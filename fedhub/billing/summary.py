"""What a tenant's usage and spending look like so far: the billing service's usage answer
and the tenant admin's console (``/hub/fedhub/console``) read them through these functions,
so both show the same numbers.

Everything here reads; nothing writes. The caller scopes the session to the tenant
(``fedhub.db.rls.tenant``) and passes the clock's now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.billing.models import Invoice
from fedhub.billing.money import ZERO
from fedhub.billing.periods import containing
from fedhub.billing.rating import Rating, rate
from fedhub.tiers import TierCatalog


def usage_document(r: Rating) -> dict[str, Any]:
    """A period's usage per meter against what the plan includes, the estimated total and
    each user's share (``GET /services/billing/api/v1/usage`` for a tenant admin)."""
    meters = {
        m: {k: (v if k == "unit" else str(v)) for k, v in vals.items()}
        for m, vals in r.usage_summary().items()
    }
    return {
        "tenant": r.tenant,
        "period": r.period.name,
        "meters": meters,
        "estimated_total": str(r.total),
        "by_user": {k: str(v) for k, v in sorted(r.by_user().items())},
    }


def monthly_costs(
    session: Session, tenant: str, catalog: TierCatalog, *, now: datetime, months: int = 6
) -> list[dict[str, Any]]:
    """The tenant's amount for each of the last ``months`` months, oldest first: the
    invoice where one exists (``draft`` or ``finalized``), else billing's rating so far
    (``estimate``; the running month always is one until it closes)."""
    current = containing(now)
    periods = [current]
    while len(periods) < months:
        periods.insert(0, periods[0].previous())
    invoices = {
        inv.period_start: inv
        for inv in session.scalars(
            select(Invoice).where(
                Invoice.tenant == tenant, Invoice.period_start >= periods[0].start
            )
        )
    }
    result = []
    for period in periods:
        inv = invoices.get(period.start)
        if inv is not None:
            total, basis = inv.total, inv.status
        else:
            until = now if period == current else None
            total, basis = rate(session, tenant, period, catalog, until=until).total, "estimate"
        result.append({"period": period.name, "total": str(total or ZERO), "basis": basis})
    return result
