"""What a team used (part of :mod:`fedhub.tenancy.teams`, re-exported there): its members'
compute hours and experiments this month (the meter's events) and its experiments queued or
running now (the experiments service's table). The spawn quota
(:func:`fedhub.quotas.reserve`) and the tenant console read them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import column, func, select, table
from sqlalchemy.orm import Session

from fedhub import limits, metering
from fedhub.db.base import utcnow

# the experiments service's table, read (not imported: the core does not import services)
# for the console's count; the statuses it counts are its ACTIVE ones (queued, running)
_EXPERIMENTS = table("fedhub_experiments", column("tenant"), column("username"), column("status"))
ACTIVE_EXPERIMENTS = ("queued", "running")


def _metered(
    s: Session, slug: str, members: list[str], kind: str, start: datetime, end: datetime
) -> float:
    """The sum of the members' meter events of ``kind`` that started in [start, end)."""
    event = metering.MeterEvent
    return s.execute(
        select(func.coalesce(func.sum(event.quantity), 0.0)).where(
            event.tenant == slug,
            event.kind == kind,
            event.username.in_(members),
            event.start >= start,
            event.start < end,
        )
    ).scalar_one()


def compute_hours_used(
    s: Session, slug: str, members: list[str], now: datetime | None = None
) -> float:
    """CPU-core hours the team's members used this month (the tenant's definition,
    :data:`fedhub.limits` ``compute_hours_per_month``, summed over the members)."""
    if not members:
        return 0.0
    key = "compute_hours_per_month"
    lim = limits.get(key)
    start, end = limits.window_bounds(lim.window, now or utcnow())
    total = _metered(s, slug, members, lim.kind, start, end)
    return limits.to_units(key, float(total))


def experiments_this_month(
    s: Session, slug: str, members: list[str], now: datetime | None = None
) -> int:
    if not members:
        return 0
    start, end = metering.month_bounds(now)
    return int(_metered(s, slug, members, limits.EXPERIMENTS, start, end))


def concurrent_experiments(s: Session, slug: str, members: list[str]) -> int:
    if not members:
        return 0
    return s.execute(
        select(func.count())
        .select_from(_EXPERIMENTS)
        .where(
            _EXPERIMENTS.c.tenant == slug,
            _EXPERIMENTS.c.username.in_(members),
            _EXPERIMENTS.c.status.in_(ACTIVE_EXPERIMENTS),
        )
    ).scalar_one()
