"""Budgets per tenant: alerts at 80 % and 100 % of a monthly amount, once each.

An alert is a row keyed by (tenant, period, threshold): inserting it is what
decides that it fires, so two checkers racing still emit one
``billing.budget_alert`` event. The event is emitted after the row is committed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub import events
from fedhub.billing.models import Budget, BudgetAlert
from fedhub.billing.money import cents, dec
from fedhub.billing.periods import containing
from fedhub.billing.rating import rate
from fedhub.db import insert_ignore
from fedhub.errors import InvalidRequest
from fedhub.tiers import TierCatalog

log = logging.getLogger("fedhub.billing")
DEFAULT_THRESHOLDS = (80, 100)


def get_budget(session: Session, tenant: str) -> Budget | None:
    return session.get(Budget, tenant)


def set_budget(
    session: Session,
    tenant: str,
    monthly_limit: Any,
    thresholds: list[int] | None = None,
    *,
    actor: str | None = None,
    now: datetime,
) -> Budget:
    try:
        limit = cents(dec(monthly_limit))
    except Exception:
        raise InvalidRequest(f"monthly_limit must be a number, got {monthly_limit!r}") from None
    if not limit.is_finite() or limit <= 0:
        raise InvalidRequest("monthly_limit must be a positive amount")
    thresholds = thresholds or DEFAULT_THRESHOLDS
    # checked before sorting: a JSON body may hold anything (lists, objects, true) here
    if not isinstance(thresholds, list | tuple) or not all(
        type(t) is int and 1 <= t <= 1000 for t in thresholds
    ):
        raise InvalidRequest("thresholds must be a list of whole percentages between 1 and 1000")
    thresholds = sorted(set(thresholds))
    budget = session.get(Budget, tenant)
    if budget is None:
        budget = Budget(tenant=tenant)
        session.add(budget)
    budget.monthly_limit = limit
    budget.thresholds = thresholds
    budget.updated_at = now
    budget.updated_by = actor
    return budget


def budget_document(session: Session, budget: Budget, spent: Decimal | None) -> dict[str, Any]:
    period = None
    alerts = session.scalars(
        select(BudgetAlert).where(BudgetAlert.tenant == budget.tenant).order_by(BudgetAlert.id)
    ).all()
    return {
        "tenant": budget.tenant,
        "monthly_limit": str(budget.monthly_limit),
        "thresholds": budget.thresholds,
        "spent": None if spent is None else str(spent),
        "updated_at": budget.updated_at.isoformat(),
        "updated_by": budget.updated_by,
        "alerts": [
            {
                "period": a.period_start.strftime("%Y-%m"),
                "threshold": a.threshold,
                "amount": str(a.amount),
                "at": a.created_at.isoformat(),
            }
            for a in alerts
            if period is None or a.period_start == period
        ],
    }


def check_budget(
    session: Session, tenant: str, catalog: TierCatalog, *, now: datetime
) -> list[dict[str, Any]]:
    """Record the alerts the tenant's spending this month has crossed; return the new ones.

    The caller commits, then emits (see :func:`emit_alerts`).
    """
    budget = session.get(Budget, tenant)
    if budget is None:
        return []
    period = containing(now)
    spent = rate(session, tenant, period, catalog, until=now).total
    new = []
    for threshold in budget.thresholds:
        if spent * 100 < budget.monthly_limit * threshold:
            continue
        row = {
            "tenant": tenant,
            "period_start": period.start,
            "threshold": threshold,
            "amount": spent,
            "budget": budget.monthly_limit,
            "created_at": now,
        }
        table = BudgetAlert.__table__
        key = ["tenant", "period_start", "threshold"]
        if not insert_ignore(session, table, row, key, returning=table.c.id):
            continue  # recorded before, here or by another checker: it fires once
        new.append(
            {
                "tenant": tenant,
                "period": period.name,
                "threshold": threshold,
                "spent": str(spent),
                "budget": str(budget.monthly_limit),
            }
        )
    return new


def emit_alerts(alerts: list[dict[str, Any]]) -> None:
    for alert in alerts:
        log.warning(
            "Tenant %s spent %s of its %s budget (%s %%)",
            alert["tenant"],
            alert["spent"],
            alert["budget"],
            alert["threshold"],
        )
        events.emit(
            "billing.budget_alert",
            tenant=alert["tenant"],
            actor="fedhub-billing",
            target=alert["tenant"],
            severity="warning" if alert["threshold"] >= 100 else "notice",
            details=alert,
        )
