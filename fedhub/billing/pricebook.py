"""The price book: what each tier charges, read from ``tiers.yaml``.

A tier's ``monthly_price`` is the base fee; its quotas (``compute_hours_per_month``,
``storage_gb``, ...) are what the base fee includes; ``overage`` holds the unit
price of each unit beyond that; ``discount_percent`` is a negotiated discount on
the subtotal. A tenant's negotiated prices are ordinary tier overrides (``fedhub
tenant update acme --override overage.compute_hour=0.35``), applied and validated by
:meth:`fedhub.tiers.TierCatalog.effective` and recorded in the subscription history,
so a price change mid-month is prorated like a tier change.

Each :class:`Meter` turns one kind of meter event into billable units. The meters are
built from :data:`fedhub.limits.PRICES`, the registry every consumer of tier limits reads:
``compute_hours`` prices ``cpu_seconds`` (CPU-core hours), the very number the spawn quota
counts against ``compute_hours_per_month``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from fedhub import limits
from fedhub.billing.money import dec
from fedhub.tiers import Tier

CURRENCY = "USD"


@dataclass(frozen=True)
class Meter:
    name: str
    kind: str  # the MeterEvent kind it reads
    unit: str
    description: str
    divisor: Decimal  # event quantity / divisor = billable units (None: days in month)
    price: Callable[[Tier], Decimal]
    included: Callable[[Tier, int], Decimal]  # per full month of ``days`` days
    per_day_divisor: bool = False  # GB-days → GB-months: divide by the month's days


def _overage(field: str) -> Callable[[Tier], Decimal]:
    return lambda tier: dec(getattr(tier.overage, field))


def _per_unit(line: limits.PriceLine) -> Decimal:
    return dec(int(line.per_unit)) if float(line.per_unit).is_integer() else dec(line.per_unit)


def _included(line: limits.PriceLine) -> Callable[[Tier, int], Decimal]:
    """The allowance in billing units: the quota's value, converted from its unit
    (``limits.Limit.per_unit``) to the line's (1 core-hour = 1 core-hour; 10,000 calls a
    day = 10 x 1k calls a day), times the period's days for a daily allowance."""
    if line.included is None:
        return lambda _tier, _days: Decimal(0)
    key = limits.get(line.included)
    factor = dec(key.per_unit) / _per_unit(line)
    if line.included_per_day:  # a daily allowance (api_calls_per_day): days x per day
        return lambda tier, days: dec(key.value(tier)) * days * factor
    return lambda tier, _days: dec(key.value(tier)) * factor


def meter(line: limits.PriceLine) -> Meter:
    """The billing side of one :data:`fedhub.limits.PRICES` line."""
    return Meter(
        line.name,
        line.kind,
        line.unit,
        line.description,
        _per_unit(line),
        _overage(line.overage),
        _included(line),
        per_day_divisor=line.per_day,
    )


#: One meter per price line of the registry: the kind, the unit conversion and the
#: included allowance are the ones the quotas read (compute hours are CPU-core hours).
METERS: tuple[Meter, ...] = tuple(meter(line) for line in limits.PRICES)

METERS_BY_KIND = {m.kind: m for m in METERS}
BILLED_KINDS = tuple(METERS_BY_KIND)


def base_price(tier: Tier) -> Decimal:
    return dec(tier.monthly_price)


def discount(tier: Tier) -> Decimal:
    return dec(tier.discount_percent)
