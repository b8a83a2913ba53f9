"""The external events API's rules: validation, the late window, one transaction per batch.

A batch is checked whole before anything is written: one bad or too-late event
(a quantity above ``BillingSettings.max_event_quantity``, say) refuses the batch (nothing is half-ingested, so a client just fixes and resends).
The write is one transaction of ``INSERT ... ON CONFLICT DO NOTHING`` on the
meter's unique (tenant, source, idempotency key): a batch killed mid-way leaves
nothing, a retried batch counts every event once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from fedhub.errors import FedhubError, InvalidRequest
from fedhub.metering import Usage, record
from fedhub.tenancy.store import SLUG_RE

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,50}$")
MAX_ATTRIBUTES_BYTES = 4096
DEFAULT_MAX_QUANTITY = 1e9  # BillingSettings.max_event_quantity's default


class LateEvent(FedhubError):
    """An event older than the late window: it can no longer be billed through the API."""

    code = "late_event"
    status = 422


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: expected an ISO 8601 time string")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{where}: {value!r} is not an ISO 8601 time") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def _quantity(value: Any, field: str, maximum: float) -> float:
    """A finite number in ``[0, maximum]``, or :class:`InvalidRequest` naming field and bound.

    Integers are compared before any float conversion: ``10**400`` is refused, not an
    ``OverflowError``.
    """
    bounds = {"field": field, "min": 0, "max": maximum}
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{field}: a number", details=bounds)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"{field}: must be a finite number", details=bounds)
    if value < 0:
        raise InvalidRequest(f"{field}: must be >= 0, got {value:g}", details=bounds)
    if value > maximum:
        shown = f"{value:.6g}" if isinstance(value, float) or value < 10**30 else "a larger integer"
        raise InvalidRequest(
            f"{field}: at most {maximum:g} per event (the billing service's"
            f" max_event_quantity), got {shown}; nothing from this batch was recorded",
            details=bounds,
        )
    return float(value)


def parse_event(raw: Any, i: int, max_quantity: float = DEFAULT_MAX_QUANTITY) -> Usage:
    """One event of a batch → a :class:`~fedhub.metering.Usage` (source prefixed ``ext:``)."""
    where = f"events[{i}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: expected an object")
    unknown = set(raw) - {
        "id",
        "tenant",
        "kind",
        "quantity",
        "time",
        "start",
        "end",
        "user",
        "source",
        "attributes",
    }
    if unknown:
        raise InvalidRequest(f"{where}: unknown field {sorted(unknown)[0]!r}")
    key = raw.get("id")
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        raise InvalidRequest(f"{where}.id: a string of 1-200 characters (the idempotency key)")
    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or not SLUG_RE.match(tenant):
        raise InvalidRequest(f"{where}.tenant: a tenant slug")
    kind = raw.get("kind")
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise InvalidRequest(f"{where}.kind: lowercase letters, digits and _ (e.g. api_calls)")
    quantity = _quantity(raw.get("quantity"), f"{where}.quantity", max_quantity)
    if "time" in raw:
        start = end = _time(raw["time"], f"{where}.time")
    else:
        start = _time(raw.get("start"), f"{where}.start")
        end = _time(raw.get("end", raw.get("start")), f"{where}.end")
    if end < start:
        raise InvalidRequest(f"{where}: end is before start")
    user = raw.get("user")
    if user is not None and (not isinstance(user, str) or not 1 <= len(user) <= 255):
        raise InvalidRequest(f"{where}.user: a username")
    source = raw.get("source", "default")
    if not isinstance(source, str) or not SOURCE_RE.match(source):
        raise InvalidRequest(f"{where}.source: lowercase letters, digits and . _ -")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict) or len(str(attributes)) > MAX_ATTRIBUTES_BYTES:
        raise InvalidRequest(f"{where}.attributes: an object under {MAX_ATTRIBUTES_BYTES} bytes")
    return Usage(
        tenant=tenant,
        kind=kind,
        quantity=float(quantity),
        start=start,
        end=end,
        source=f"ext:{source}",
        idempotency_key=key,
        username=user,
        attributes=attributes,
    )


def parse_batch(
    body: Any,
    *,
    now: datetime,
    late_window: timedelta,
    future_skew: timedelta,
    max_batch: int,
    max_quantity: float = DEFAULT_MAX_QUANTITY,
    check_tenant: Callable[[str], None] | None = None,
) -> list[Usage]:
    """Validate a whole batch (``{"events": [...]}``) or refuse it with one clear error."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise InvalidRequest('expected {"events": [...]}')
    raw_events = body["events"]
    if not raw_events:
        raise InvalidRequest("the batch is empty")
    if len(raw_events) > max_batch:
        raise InvalidRequest(f"at most {max_batch} events per batch, got {len(raw_events)}")
    usages = [parse_event(raw, i, max_quantity) for i, raw in enumerate(raw_events)]
    if check_tenant:
        for tenant in sorted({u.tenant for u in usages}):
            check_tenant(tenant)
    oldest = now - late_window
    late = [u.idempotency_key for u in usages if u.start < oldest]
    if late:
        raise LateEvent(
            f"{len(late)} event(s) are older than the late window "
            f"({late_window.total_seconds() / 3600:g} h, events from {oldest:%Y-%m-%dT%H:%M}Z on "
            "are accepted); nothing from this batch was recorded",
            details={"late_ids": late[:100], "accepted_from": oldest.isoformat() + "Z"},
        )
    future = [u.idempotency_key for u in usages if u.end > now + future_skew]
    if future:
        raise InvalidRequest(
            f"{len(future)} event(s) end in the future; send usage once it happened",
            details={"future_ids": future[:100]},
        )
    return usages


def ingest(session: Session, usages: list[Usage], *, now: datetime) -> dict[str, int]:
    """Record a validated batch in the caller's one transaction; duplicates count once."""
    inserted = record(session, usages, now=now)
    return {"received": len(usages), "accepted": inserted, "duplicates": len(usages) - inserted}
