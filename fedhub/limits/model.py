"""The registry's vocabulary: windows, enforcement points, roles, meter kinds, and the
three record types of :mod:`fedhub.limits` (:class:`Limit`, :class:`MeterKind`,
:class:`PriceLine`), with the names of the code that enforces or produces them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# -- vocabulary -----------------------------------------------------------------------

#: Time windows: a usage limit counts the meter over one calendar window (UTC); a ``level``
#: is a count or size at the moment of the check; ``request`` bounds one request.
MONTH, DAY, HOUR, LEVEL, REQUEST = "month", "day", "hour", "level", "request"
WINDOWS = (MONTH, DAY, HOUR, LEVEL, REQUEST)

#: Where a key is checked. ``spawn``: the tier spawner before a server starts; ``run time``:
#: the hub's reconciler while servers run (or the experiments runner between rounds);
#: ``service``: a fedhub service refuses the request; ``proxy``: every API request
#: (the rate limiter); ``membership``: adding a member; ``login``; ``billing``: priced.
SPAWN, RUNTIME, SERVICE, PROXY, MEMBERSHIP, LOGIN, BILLING = (
    "spawn",
    "run time",
    "service",
    "proxy",
    "membership",
    "login",
    "billing",
)

LIMIT, ENTITLEMENT, PRICE, LABEL = "limit", "entitlement", "price", "label"

# meter kinds (the ``kind`` of a fedhub.metering.MeterEvent)
SERVER_SECONDS = "server_seconds"
CPU_SECONDS = "cpu_seconds"
MEMORY_GB_SECONDS = "memory_gb_seconds"
STORAGE_GB_DAYS = "storage_gb_days"
API_CALLS = "api_calls"
EXPERIMENTS = "experiments"
FL_CLIENT_SECONDS = "fl_client_seconds"
FL_ROUNDS = "fl_rounds"
DASK_WORKER_SECONDS = "dask_worker_seconds"
MARKETPLACE = "marketplace"  # a charge of an exact amount, not usage (billing.rating)
MARKETPLACE_USES = "marketplace_uses"  # an asset used in a run: reports, not priced


@dataclass(frozen=True)
class Limit:
    """One key of a tier.

    ``per_unit`` converts the meter: ``used = sum(quantity of kind in window) / per_unit``
    (3600 turns ``cpu_seconds`` into core-hours). ``enforcers`` are ``"module:qualname"``
    of the code that refuses or acts on the key; the registry test imports each one.
    """

    key: str  # the key in tiers.yaml (dotted for features.* and overage.*)
    role: str
    description: str
    unit: str = ""
    window: str = ""  # one of WINDOWS; empty: not a usage limit
    kind: str | None = None  # the meter kind it reads
    per_unit: float = 1.0
    enforced_at: tuple[str, ...] = ()
    enforcers: tuple[str, ...] = ()
    enforced: bool = True
    gap: str = ""  # why it is not enforced (enforced=False), said plainly in the docs
    price: str | None = None  # the PriceLine that bills it

    def value(self, tier: Any) -> Any:
        """The key's value in a :class:`fedhub.tiers.Tier` (dotted keys walk sub-models)."""
        value = tier
        for part in self.key.split("."):
            value = getattr(value, part)
        return value


@dataclass(frozen=True)
class MeterKind:
    """A kind of usage event and the functions that record it (``"module:qualname"``)."""

    kind: str
    unit: str  # the unit of one event's quantity
    description: str
    producers: tuple[str, ...]


@dataclass(frozen=True)
class PriceLine:
    """One usage line of an invoice: ``kind`` / ``per_unit`` billable units, beyond
    ``included`` (a tier key; ``included_per_day`` multiplies it by the period's days),
    at the unit price in ``overage.<overage>``. ``per_day`` meters (GB-days) are divided
    by the days of the month, which turns them into GB-months."""

    name: str
    kind: str
    unit: str
    description: str
    per_unit: float
    overage: str
    included: str | None = None
    included_per_day: bool = False
    per_day: bool = False


QUOTAS = "fedhub.quotas"
EXP_QUOTA = "fedhub.services.experiments.quota"
RECONCILER = "fedhub.extensions.hub.spawner.reconciler:Reconciler._tenant_states"
SAMPLERS = "fedhub.billing.samplers"
PRICEBOOK = "fedhub.billing.pricebook"
#: the hub API and every service: fedhub.extensions.hub.rate_limit, fedhub.web.APIHandler.prepare
RATE_LIMITER = "fedhub.ratelimit:TenantRateLimiter.check"
PASSWORDS = "fedhub.tenancy.passwords"
LOCAL_LOGIN = "fedhub.extensions.hub.local_auth:LocalTenantAuthenticator.authenticate"
SCHEDULER = "fedhub.scheduler.claims"
GATEWAY = "fedhub.gateway.backend:FedhubBackend"
GATEWAY_METER = "fedhub.gateway.meter:record_worker_time"
