"""One registry of every tier key and meter kind: what it means, where it is enforced, what it costs.

Before this table, each consumer read ``tiers.yaml`` its own way: the spawn quota counted
``compute_hours_per_month`` in CPU-core hours while billing's included allowance counted
server hours, the ``experiments`` meter was priced but never recorded, and
``api_calls_per_day`` was listed as a limit that nothing refused. Now the quota
(:mod:`fedhub.quotas`, the experiments service), billing (:data:`fedhub.billing.pricebook.METERS`
is built from :data:`PRICES`), the quota panel and ``/quota`` endpoint, ``fedhub tiers show``
and the table in ``docs/quotas.md`` (``python -m fedhub.limits --markdown``) all read it, and
``tests/foundation/test_limits_registry.py`` fails when a tier key has no entry, an enforced
entry names a check that does not exist, or a priced meter kind has no producer.

Three tables, like :data:`fedhub.billing.pricebook.METERS`:

- :data:`LIMITS`: one :class:`Limit` per key of a tier (``features.*`` and ``overage.*``
  one per sub-key). ``role`` says what kind of key it is: a ``limit`` (a number that
  refuses), an ``entitlement`` (what a tier may use at all), a ``price`` or a ``label``.
- :data:`METER_KINDS`: one :class:`MeterKind` per kind of usage event fedhub records,
  with the functions that record it.
- :data:`PRICES`: one :class:`PriceLine` per invoice line, with the tier key that says
  how much is included and the ``overage`` key that prices the rest.

The vocabulary and the record types are in :mod:`fedhub.limits.model`, the entries in
:mod:`fedhub.limits.catalog` (tier keys) and :mod:`fedhub.limits.usage` (meter kinds and
price lines); this module re-exports them and holds the functions.

A limit that is declared but not enforced says so (``enforced=False`` and a ``gap``): the
docs print it and the registry test lists it, instead of a table that quietly promises.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fedhub.limits.catalog import LIMITS
from fedhub.limits.model import (
    API_CALLS,
    BILLING,
    CPU_SECONDS,
    DASK_WORKER_SECONDS,
    DAY,
    ENTITLEMENT,
    EXP_QUOTA,
    EXPERIMENTS,
    FL_CLIENT_SECONDS,
    FL_ROUNDS,
    GATEWAY,
    GATEWAY_METER,
    HOUR,
    LABEL,
    LEVEL,
    LIMIT,
    LOCAL_LOGIN,
    LOGIN,
    MARKETPLACE,
    MEMBERSHIP,
    MEMORY_GB_SECONDS,
    MONTH,
    PASSWORDS,
    PRICE,
    PRICEBOOK,
    PROXY,
    QUOTAS,
    RATE_LIMITER,
    RECONCILER,
    REQUEST,
    RUNTIME,
    SAMPLERS,
    SCHEDULER,
    SERVER_SECONDS,
    SERVICE,
    SPAWN,
    STORAGE_GB_DAYS,
    WINDOWS,
    Limit,
    MeterKind,
    PriceLine,
)
from fedhub.limits.usage import METER_KINDS, PRICES

__all__ = [
    "API_CALLS",
    "BILLING",
    "BY_KEY",
    "CPU_SECONDS",
    "DASK_WORKER_SECONDS",
    "DAY",
    "ENTITLEMENT",
    "EXPERIMENTS",
    "EXP_QUOTA",
    "FL_CLIENT_SECONDS",
    "FL_ROUNDS",
    "GATEWAY",
    "GATEWAY_METER",
    "HOUR",
    "KINDS",
    "LABEL",
    "LEVEL",
    "LIMIT",
    "LIMITS",
    "LOCAL_LOGIN",
    "LOGIN",
    "MARKETPLACE",
    "Limit",
    "MEMBERSHIP",
    "MEMORY_GB_SECONDS",
    "METER_KINDS",
    "MONTH",
    "MeterKind",
    "PASSWORDS",
    "PRICE",
    "PRICEBOOK",
    "PRICES",
    "PRICES_BY_NAME",
    "PROXY",
    "PriceLine",
    "QUOTAS",
    "RATE_LIMITER",
    "RECONCILER",
    "REQUEST",
    "RUNTIME",
    "SAMPLERS",
    "SCHEDULER",
    "SERVER_SECONDS",
    "SERVICE",
    "SPAWN",
    "STORAGE_GB_DAYS",
    "WINDOWS",
]

BY_KEY: Mapping[str, Limit] = {lim.key: lim for lim in LIMITS}
KINDS: Mapping[str, MeterKind] = {m.kind: m for m in METER_KINDS}
PRICES_BY_NAME: Mapping[str, PriceLine] = {p.name: p for p in PRICES}


def get(key: str) -> Limit:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"{key!r} is not in fedhub.limits.LIMITS") from None


def gaps() -> dict[str, str]:
    """Keys declared but not enforced, with why: the registry's own list of known gaps."""
    return {lim.key: lim.gap for lim in LIMITS if not lim.enforced}


# -- one definition of usage ------------------------------------------------------------


def window_bounds(window: str, now: datetime) -> tuple[datetime, datetime]:
    """The calendar window (naive UTC) containing ``now``: month, day or hour."""
    if window == MONTH:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    if window == DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if window == HOUR:
        start = now.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    raise ValueError(f"window {window!r} is not a calendar window")


def to_units(key: str, quantity: float) -> float:
    """A meter quantity in the limit's unit (cpu_seconds → core-hours): the one conversion."""
    return quantity / get(key).per_unit


# -- refusals ---------------------------------------------------------------------------


def details(key: str, allowed: Any, used: Any, requested: Any = None, **extra: Any) -> dict:
    """The one shape of ``QuotaExceeded.details``: the tier key, its value, the usage.

    ``{"limit": "<tier key>", "allowed": <number>, "used": <number>, "requested": <n>,
    "unit": "..."}``; ``requested`` is what the refused request asked for (1 more server,
    an experiment's clients) and ``extra`` adds context (``tier``).
    """
    out = {
        "limit": key,
        "allowed": allowed,
        "used": used,
        "requested": requested,
        "unit": get(key).unit,
    }
    out.update(extra)
    return out


def markdown_table() -> str:
    """The limits table of ``docs/quotas.md`` (checked against the doc by the registry test)."""
    lines = [
        "| key | what | unit | window | meter kind | enforced at | price line |",
        "|---|---|---|---|---|---|---|",
    ]
    for lim in LIMITS:
        if lim.role == LABEL:
            continue
        where = ", ".join(lim.enforced_at) or "—"
        if not lim.enforced:
            where += f" (**not enforced**: {lim.gap})"
        lines.append(
            f"| `{lim.key}` | {lim.description} | {lim.unit or '—'} | {lim.window or '—'} | "
            f"{f'`{lim.kind}`' if lim.kind else '—'} | {where} | "
            f"{f'`{lim.price}`' if lim.price else '—'} |"
        )
    return "\n".join(lines)


TABLE_BEGIN = "<!-- limits-table: generated by `python -m fedhub.limits --markdown` -->"
TABLE_END = "<!-- /limits-table -->"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["--markdown"]:
        print("usage: python -m fedhub.limits --markdown", file=sys.stderr)
        raise SystemExit(2)
    print(TABLE_BEGIN)
    print(markdown_table())
    print(TABLE_END)
