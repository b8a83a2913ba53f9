"""The usage meter: an append-only table of usage events, counted exactly once.

Every producer (the tier spawner's reconciler, the experiments service, the
billing samplers, the billing ingest API) records :class:`MeterEvent` rows with an
idempotency key that is unique per tenant and source, so recording the same event
twice counts once. Billing prices these rows; quota enforcement sums them. The kinds
fedhub records, their units and their producers are declared in
:data:`fedhub.limits.METER_KINDS`; what a tier allows of each, in :data:`fedhub.limits.LIMITS`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Index,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub import limits
from fedhub.db import get_engine, insert_ignore, session_scope
from fedhub.db.base import Base, utcnow
from fedhub.jobs import PeriodicJob

# Kinds produced by fedhub itself (all of them: fedhub.limits.METER_KINDS); external
# sources may add their own.
from fedhub.limits import (  # noqa: F401  (re-exported)
    API_CALLS,
    CPU_SECONDS,
    MEMORY_GB_SECONDS,
    MONTH,
    SERVER_SECONDS,
    window_bounds,
)

log = logging.getLogger("fedhub.metering")


class MeterEvent(Base):
    __tablename__ = "fedhub_meter_events"
    __table_args__ = (
        UniqueConstraint("tenant", "source", "idempotency_key", name="uq_meter_idempotency"),
        Index("ix_meter_tenant_kind_start", "tenant", "kind", "start"),
        Index("ix_meter_tenant_user_kind_start", "tenant", "username", "kind", "start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[float] = mapped_column(Float)
    start: Mapped[datetime] = mapped_column(DateTime)
    end: Mapped[datetime] = mapped_column(DateTime)
    source: Mapped[str] = mapped_column(String(63))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


@dataclass(frozen=True)
class Usage:
    """One usage record to add to the meter (times are naive UTC)."""

    tenant: str
    kind: str
    quantity: float
    start: datetime
    end: datetime
    source: str
    idempotency_key: str
    username: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def row(self, recorded_at: datetime) -> dict[str, Any]:
        if self.quantity < 0:
            raise ValueError(f"usage quantity must be >= 0, got {self.quantity}")
        return {
            "tenant": self.tenant,
            "username": self.username,
            "kind": self.kind,
            "quantity": float(self.quantity),
            "start": self.start,
            "end": self.end,
            "source": self.source,
            "idempotency_key": self.idempotency_key,
            "attributes": dict(self.attributes),
            "recorded_at": recorded_at,
        }


def record(session: Session, usages: Iterable[Usage], *, now: datetime | None = None) -> int:
    """Append usage events; duplicates (same tenant, source, key) are ignored.

    Returns how many rows were new. The caller commits.
    """
    recorded_at = now or utcnow()
    rows = [u.row(recorded_at) for u in usages]
    if not rows:
        return 0
    return insert_ignore(
        session,
        MeterEvent.__table__,
        rows,
        ["tenant", "source", "idempotency_key"],
        returning=MeterEvent.__table__.c.id,
    )


def usage_total(
    session: Session,
    tenant: str,
    kind: str,
    since: datetime,
    until: datetime | None = None,
    *,
    username: str | None = None,
) -> float:
    """Sum of a kind of usage whose interval starts in ``[since, until)``."""
    q = select(func.coalesce(func.sum(MeterEvent.quantity), 0.0)).where(
        MeterEvent.tenant == tenant, MeterEvent.kind == kind, MeterEvent.start >= since
    )
    if until is not None:
        q = q.where(MeterEvent.start < until)
    if username is not None:
        q = q.where(MeterEvent.username == username)
    return float(session.execute(q).scalar_one())


def month_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The calendar month (naive UTC) containing ``now``: the billing month."""
    return window_bounds(MONTH, now or utcnow())


def month_usage(
    session: Session,
    tenant: str,
    kind: str,
    *,
    username: str | None = None,
    now: datetime | None = None,
) -> float:
    start, end = month_bounds(now)
    return usage_total(session, tenant, kind, start, end, username=username)


# API calls: one definition, fedhub.limits.API_CALLS: every request of a tenant's user or
# service account to the hub's REST API or a fedhub service that the rate limiter let through
# (fedhub.ratelimit; a 429 is not a call). The hub (extensions/hub/rate_limit.py) and
# fedhub.web.APIHandler call count_api_call (an in-process counter per service, tenant, user
# and hour); flush_api_calls writes the deltas as ``api_calls`` events keyed by process and
# flush sequence. A process killed between flushes loses at most one interval of counts
# (they are never counted twice).
_calls: Counter = Counter()
_calls_lock = threading.Lock()
_process = uuid.uuid4().hex[:12]
_seq = 0


FLUSH_SECONDS = 60
_flusher = None
_flush_url: str | None = None  # None: fedhub.db.database_url() of this process


def count_api_call(service: str, tenant: str | None, username: str | None) -> None:
    """Count one API call (cheap: a dict increment; flushed every minute)."""
    if not tenant:
        return
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    with _calls_lock:
        _calls[(service, tenant, username, hour)] += 1
    _start_flusher()


def flush_to(db_url: str) -> None:
    """Write this process's counts to ``db_url`` (the hub: fedhub's, not the environment's)."""
    global _flush_url
    _flush_url = db_url


def _start_flusher() -> None:
    global _flusher
    if _flusher is not None:
        return
    _flusher = PeriodicJob(
        "API-call counter flush",
        lambda: flush_api_calls(_flush_url),
        FLUSH_SECONDS,
        blocking=True,
        logger=log,
    ).start()


def flush_api_calls(db_url: str | None = None) -> int:
    """Write the counted API calls as meter events (one per service, tenant, user, hour)."""
    global _seq
    with _calls_lock:
        pending = dict(_calls)
        _calls.clear()
        _seq += 1
        seq = _seq
    if not pending:
        return 0
    usages = [
        Usage(
            tenant=tenant,
            kind=API_CALLS,
            quantity=n,
            start=hour,
            end=hour + timedelta(hours=1),
            source=f"api:{service}",
            idempotency_key=f"{_process}:{seq}:{tenant}:{username}:{hour:%Y%m%d%H}",
            username=username,
            attributes={"service": service},
        )
        for (service, tenant, username, hour), n in pending.items()
    ]
    try:
        # runs in a worker thread: a session of its own, never a shared one
        with session_scope(get_engine(db_url)) as s:
            return record(s, usages)
    except Exception:
        log.exception(
            "Could not record %d API-call counts; keeping them for the next flush", len(usages)
        )
        with _calls_lock:
            for (service, tenant, username, hour), n in pending.items():
                _calls[(service, tenant, username, hour)] += n
        return 0


# -- usage against the registry's limits (one definition for quotas, billing and the panel) --


def used(session, tenant: str, key: str, now: datetime | None = None) -> float:
    """How much of a metered, windowed limit the tenant has used in the window holding ``now``.

    The quota's number and billing's number come from the same meter kind and the same
    ``per_unit`` (billing's :data:`PRICES` carry the same values; the registry test checks).
    """
    lim = limits.get(key)
    if lim.kind is None or lim.window not in (limits.MONTH, limits.DAY, limits.HOUR):
        raise ValueError(f"{key} is not a windowed meter limit")
    start, end = limits.window_bounds(lim.window, now or utcnow())
    return limits.to_units(key, usage_total(session, tenant, lim.kind, start, end))


def compute_hours_used(session, tenant: str, now: datetime | None = None) -> float:
    """CPU-core hours this month: what the spawn quota, the reconciler and billing count."""
    return used(session, tenant, "compute_hours_per_month", now)


def latest_level(session, tenant: str, key: str) -> float:
    """A sampled level (storage): the tenant's total at its latest sample, in the key's unit.

    ``storage_gb_days`` samples are GB x 1 day, one per member and day, so the latest
    day's sum is the GB the tenant holds (as last measured by the daily sample).
    """
    lim = limits.get(key)
    latest = (
        select(func.max(MeterEvent.start))
        .where(MeterEvent.tenant == tenant, MeterEvent.kind == lim.kind)
        .scalar_subquery()
    )
    total = session.execute(
        select(func.coalesce(func.sum(MeterEvent.quantity), 0.0)).where(
            MeterEvent.tenant == tenant, MeterEvent.kind == lim.kind, MeterEvent.start == latest
        )
    ).scalar_one()
    return limits.to_units(key, float(total))


def usage_rows(session, tenant: str, tier: Any, now: datetime | None = None) -> list[dict]:
    """Every metered limit with its value and usage: the quota panel's rows.

    Windowed limits count their window; a sampled level (``storage_gb``) shows the
    latest daily sample.
    """
    rows = []
    for lim in limits.LIMITS:
        if lim.role != limits.LIMIT or lim.kind is None or lim.value(tier) is None:
            continue  # not metered, or an optional limit the tier does not set
        if lim.window in (limits.MONTH, limits.DAY, limits.HOUR):
            value = used(session, tenant, lim.key, now)
        else:
            value = latest_level(session, tenant, lim.key)
        rows.append(
            {
                "limit": lim.key,
                "description": lim.description,
                "unit": lim.unit,
                "window": lim.window,
                "allowed": lim.value(tier),
                "used": round(value, 6),
                "enforced_at": list(lim.enforced_at),
                "enforced": lim.enforced,
            }
        )
    return rows
