"""The external events API's rules: validation, the late window, one transaction per batch.

A batch is checked whole before anything is written: one bad or too-late event
(a quantity above ``BillingSettings.max_event_quantity``, say) refuses the batch
(nothing is half-ingested, so a client just fixes and resends). The request body
is validated straight from its bytes by one pydantic ``TypeAdapter``
(:func:`batch_adapter`, over a list of :class:`ExternalEvent`); the first error, in
event order, becomes one 400 naming the event and field (``events[1].quantity: ...``).

The write is one transaction per batch of the shared toolkit's bulk insert-or-ignore
(:func:`fedhub.db.insert_ignore_many`) on the meter's unique (tenant, source,
idempotency key), counted by the statement's row count (no per-row ``RETURNING``:
``COPY`` into a staging table on PostgreSQL, one ``executemany`` on SQLite); nothing
here knows the dialect. A batch killed mid-way leaves nothing, a retried batch
counts every event once, and duplicates inside one batch count once too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from fedhub.db.toolkit import insert_ignore_many, parse_iso
from fedhub.errors import FedhubError, InvalidRequest
from fedhub.metering import MeterEvent, Usage
from fedhub.tenancy.store import SLUG_RE

KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,50}$")
MAX_ATTRIBUTES_BYTES = 4096
DEFAULT_MAX_QUANTITY = 1e9  # BillingSettings.max_event_quantity's default
DEFAULT_MAX_BATCH = 10000  # BillingSettings.max_batch's default
METER_KEY = ("tenant", "source", "idempotency_key")  # uq_meter_idempotency: one event once

#: What each field must be, as the 400 says it (``events[3].kind: lowercase ...``).
FIELD_RULES = {
    "id": "a string of 1-200 characters (the idempotency key)",
    "tenant": "a tenant slug",
    "kind": "lowercase letters, digits and _ (e.g. api_calls)",
    "quantity": "a number",
    "user": "a username",
    "source": "lowercase letters, digits and . _ -",
    "attributes": f"an object under {MAX_ATTRIBUTES_BYTES} bytes",
}
#: The order fields are checked in: the first failing one is the one reported.
_FIELD_ORDER = {name: n for n, name in enumerate(FIELD_RULES)}


class LateEvent(FedhubError, code="late_event", status=422):
    """An event older than the late window: it can no longer be billed through the API."""


def _refuse(reason: str, field: str | None = None) -> PydanticCustomError:
    """A validation error carrying our own message (pydantic keeps ``ctx`` as given)."""
    return PydanticCustomError("fedhub", "{reason}", {"reason": reason, "field": field})


def _quantity(value: Any, maximum: float) -> float:
    """A finite number in ``[0, maximum]``.

    Integers are compared before any float conversion: ``10**400`` is refused, not an
    ``OverflowError``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse("a number", "quantity")
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse("must be a finite number", "quantity")
    if value < 0:
        raise _refuse(f"must be >= 0, got {value:g}", "quantity")
    if value > maximum:
        shown = f"{value:.6g}" if isinstance(value, float) or value < 10**30 else "a larger integer"
        raise _refuse(
            f"at most {maximum:g} per event (the billing service's max_event_quantity),"
            f" got {shown}; nothing from this batch was recorded",
            "quantity",
        )
    return float(value)


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise _refuse("expected an ISO 8601 time string", field)
    try:
        return parse_iso(value)
    except ValueError:
        raise _refuse(f"{value!r} is not an ISO 8601 time", field) from None


class ExternalEvent(BaseModel):
    """One usage event as a client sends it to ``POST /api/v1/events``.

    Either ``time`` (an instant) or ``start`` (and optionally ``end``), in ISO 8601;
    ``time`` wins when both are given. ``source`` defaults to ``default`` and is
    stored as ``ext:<source>``.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    id: Annotated[str, Field(min_length=1, max_length=200)]
    tenant: Annotated[str, Field(pattern=SLUG_RE.pattern)]
    kind: Annotated[str, Field(pattern=KIND_RE.pattern)]
    quantity: Any
    time: Any = None  # checked in _to_usage: an explicit null is an error, absence is not
    start: Any = None
    end: Any = None
    user: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    source: Annotated[str, Field(pattern=SOURCE_RE.pattern)] = "default"
    attributes: Any = Field(default_factory=dict)

    @field_validator("quantity", mode="plain")
    @classmethod
    def _check_quantity(cls, value: Any, info: ValidationInfo) -> float:
        maximum = (info.context or {}).get("max_quantity", DEFAULT_MAX_QUANTITY)
        return _quantity(value, maximum)

    @field_validator("attributes", mode="plain")
    @classmethod
    def _check_attributes(cls, value: Any) -> dict[str, Any]:
        value = value or {}
        if not isinstance(value, dict) or len(str(value)) > MAX_ATTRIBUTES_BYTES:
            raise _refuse(FIELD_RULES["attributes"], "attributes")
        return value


def _to_usage(event: ExternalEvent) -> Usage:
    given = event.model_fields_set
    if "time" in given:
        start = end = _time(event.time, "time")
    else:
        start = _time(event.start, "start")
        end = _time(event.end if "end" in given else event.start, "end")
    if end < start:
        raise _refuse("end is before start")
    return Usage(
        tenant=event.tenant,
        kind=event.kind,
        quantity=event.quantity,
        start=start,
        end=end,
        source=f"ext:{event.source}",
        idempotency_key=event.id,
        username=event.user,
        attributes=event.attributes,
    )


@lru_cache(maxsize=8)
def batch_adapter(max_batch: int = DEFAULT_MAX_BATCH) -> TypeAdapter:
    """The validator of a whole request body, ``{"events": [...]}`` → ``list[Usage]``.

    One per ``max_batch`` (a list's bounds are part of its schema); cached.
    """

    class EventBatch(BaseModel):
        model_config = ConfigDict(extra="ignore")
        events: Annotated[
            list[Annotated[ExternalEvent, AfterValidator(_to_usage)]],
            Field(min_length=1, max_length=max_batch),
        ]

    return TypeAdapter(EventBatch)


def _error_rank(error: dict) -> tuple:
    loc = error["loc"]
    if len(loc) < 2 or loc[0] != "events":
        return (-1,)
    field = loc[2] if len(loc) > 2 else (error.get("ctx") or {}).get("field")
    if error["type"] == "extra_forbidden":
        return (loc[1], -1, str(field))
    return (loc[1], _FIELD_ORDER.get(field, len(_FIELD_ORDER)), "")


def _refusal(exc: ValidationError, max_quantity: float) -> InvalidRequest:
    """The batch's first error (in event order, then field order) as one typed error."""
    error = min(exc.errors(include_url=False, include_input=False), key=_error_rank)
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
    if kind == "json_invalid":  # the same 400s as fedhub.web's get_json_body
        reason = ctx.get("error", error["msg"])
        if reason.startswith(("number out of range", "recursion limit exceeded")):
            return InvalidRequest(
                "request body is not acceptable JSON (a number or nesting too large)"
            )
        return InvalidRequest(f"request body is not valid JSON: {reason}")
    if len(loc) < 2 or loc[0] != "events":
        if kind == "too_short":
            return InvalidRequest("the batch is empty")
        if kind == "too_long":
            return InvalidRequest(
                f"at most {ctx['max_length']} events per batch, got {ctx['actual_length']}"
            )
        return InvalidRequest('expected {"events": [...]}')
    where = f"events[{loc[1]}]"
    if len(loc) == 2 and kind == "model_type":
        return InvalidRequest(f"{where}: expected an object")
    if kind == "extra_forbidden":
        return InvalidRequest(f"{where}: unknown field {loc[2]!r}")
    field = loc[2] if len(loc) > 2 else ctx.get("field")
    if field is not None:
        where = f"{where}.{field}"
    reason = ctx["reason"] if kind == "fedhub" else FIELD_RULES.get(field, error["msg"])
    if field == "quantity":
        bounds = {"field": where, "min": 0, "max": max_quantity}
        return InvalidRequest(f"{where}: {reason}", details=bounds)
    return InvalidRequest(f"{where}: {reason}")


def validate_events(
    body: bytes | str | Any,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_quantity: float = DEFAULT_MAX_QUANTITY,
) -> list[Usage]:
    """A request body (raw JSON bytes, or already decoded) → its events, or one 400."""
    adapter = batch_adapter(max_batch)
    context = {"max_quantity": max_quantity}
    try:
        if isinstance(body, bytes | str):
            batch = adapter.validate_json(body or b"null", context=context)
        else:
            batch = adapter.validate_python(body, context=context)
    except ValidationError as e:
        raise _refusal(e, max_quantity) from None
    return batch.events


def check_window(
    usages: list[Usage], *, now: datetime, late_window: timedelta, future_skew: timedelta
) -> None:
    """Refuse the batch if any event is older than the late window or in the future."""
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


def parse_batch(
    body: bytes | str | Any,
    *,
    now: datetime,
    late_window: timedelta,
    future_skew: timedelta,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_quantity: float = DEFAULT_MAX_QUANTITY,
    check_tenant: Callable[[str], None] | None = None,
) -> list[Usage]:
    """Validate a whole batch (``{"events": [...]}``) or refuse it with one clear error."""
    usages = validate_events(body, max_batch=max_batch, max_quantity=max_quantity)
    if check_tenant:
        for tenant in sorted({u.tenant for u in usages}):
            check_tenant(tenant)
    check_window(usages, now=now, late_window=late_window, future_skew=future_skew)
    return usages


# -- the write --------------------------------------------------------------------


def ingest(session: Session, usages: list[Usage], *, now: datetime) -> dict[str, int]:
    """Record a validated batch in the caller's one transaction; duplicates count once."""
    rows = [u.row(now) for u in usages]
    inserted = insert_ignore_many(session, MeterEvent.__table__, rows, METER_KEY)
    return {"received": len(usages), "accepted": inserted, "duplicates": len(usages) - inserted}
