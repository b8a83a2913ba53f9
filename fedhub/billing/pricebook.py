"""The price book: what each tier charges, read from ``tiers.yaml``.

A tier's ``monthly_price`` is the base fee; its quotas (``compute_hours_per_month``,
``storage_gb``, ...) are what the base fee includes; ``overage`` holds the unit
price of each unit beyond that; ``discount_percent`` is a negotiated discount on
the subtotal. A tenant's negotiated prices are ordinary tier overrides (``fedhub
tenant update acme --override overage.compute_hour=0.35``), applied and validated by
:meth:`fedhub.tiers.TierCatalog.effective` and recorded in the subscription history,
so a price change mid-month is prorated like a tier change.

Each :class:`Meter` turns one kind of meter event into billable units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

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


def _nothing(_tier: Tier, _days: int) -> Decimal:
    return Decimal(0)


METERS: tuple[Meter, ...] = (
    Meter(
        "compute_hours",
        "server_seconds",
        "hour",
        "Server time",
        Decimal(3600),
        _overage("compute_hour"),
        lambda t, _d: dec(t.compute_hours_per_month),
    ),
    Meter(
        "cpu_core_hours",
        "cpu_seconds",
        "core-hour",
        "Reserved CPU",
        Decimal(3600),
        _overage("cpu_core_hour"),
        _nothing,
    ),
    Meter(
        "memory_gb_hours",
        "memory_gb_seconds",
        "GB-hour",
        "Reserved memory",
        Decimal(3600),
        _overage("memory_gb_hour"),
        _nothing,
    ),
    Meter(
        "storage_gb_months",
        "storage_gb_days",
        "GB-month",
        "Storage",
        Decimal(1),
        _overage("storage_gb_month"),
        lambda t, _d: dec(t.storage_gb),
        per_day_divisor=True,
    ),
    Meter(
        "api_calls_1k",
        "api_calls",
        "1k calls",
        "API calls",
        Decimal(1000),
        _overage("api_calls_1k"),
        lambda t, d: dec(t.api_calls_per_day) * d / 1000,
    ),
    Meter(
        "experiments",
        "experiments",
        "experiment",
        "Federated experiments",
        Decimal(1),
        _overage("experiment"),
        lambda t, _d: dec(t.experiments_per_month),
    ),
    Meter(
        "client_hours",
        "fl_client_seconds",
        "client-hour",
        "Federated client time",
        Decimal(3600),
        _overage("client_hour"),
        lambda t, _d: dec(t.federated_client_hours_per_month),
    ),
    Meter(
        "fl_rounds",
        "fl_rounds",
        "round",
        "Federated rounds",
        Decimal(1),
        _overage("fl_round"),
        _nothing,
    ),
)

METERS_BY_KIND = {m.kind: m for m in METERS}
BILLED_KINDS = tuple(METERS_BY_KIND)


def base_price(tier: Tier) -> Decimal:
    return dec(tier.monthly_price)


def discount(tier: Tier) -> Decimal:
    return dec(tier.discount_percent)
