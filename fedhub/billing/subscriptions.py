"""A tenant's subscription history, as billing reads it: which tier on which day.

The tenancy records every plan change (:mod:`fedhub.tenancy.plans`, in the transaction
that makes it); :func:`record_change` is re-exported here for code that backfills a
history. Changes take effect for billing from the start of their UTC day (proration is
by day); several changes on one day: the last one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.billing.periods import Period, day_start
from fedhub.tenancy.plans import Subscription, record_change

__all__ = ["Segment", "history", "record_change", "segments"]


@dataclass(frozen=True)
class Segment:
    """Part of a period billed at one tier: ``[start, end)`` whole UTC days."""

    start: datetime
    end: datetime
    tier: str
    overrides: Mapping[str, Any]

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def history(session: Session, tenant: str) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.tenant == tenant)
            .order_by(Subscription.effective_at, Subscription.id)
        )
    )


def segments(
    changes: list[Subscription] | list[tuple[datetime, str, Mapping[str, Any]]], period: Period
) -> list[Segment]:
    """The parts of ``period`` billed at each tier, from a time-ordered change list.

    Days before the first change are not billed (the tenant did not exist yet).
    """
    by_day: dict[datetime, tuple[str, Mapping[str, Any]]] = {}
    for change in changes:
        at, tier, overrides = (
            (change.effective_at, change.tier, change.overrides)
            if isinstance(change, Subscription)
            else change
        )
        by_day[day_start(at)] = (tier, overrides)  # later changes on the same day win
    days = sorted(by_day)
    result: list[Segment] = []
    for i, day in enumerate(days):
        nxt = days[i + 1] if i + 1 < len(days) else period.end
        start, end = max(day, period.start), min(nxt, period.end)
        if start < end:
            tier, overrides = by_day[day]
            result.append(Segment(start, end, tier, overrides))
    return result
