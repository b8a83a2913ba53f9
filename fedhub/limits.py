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

A limit that is declared but not enforced says so (``enforced=False`` and a ``gap``): the
docs print it and the registry test lists it, instead of a table that quietly promises.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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

LIMITS: tuple[Limit, ...] = (
    Limit("display_name", LABEL, "Name shown to users"),
    Limit(
        "monthly_price",
        PRICE,
        "Base fee per month (prorated by day)",
        "USD",
        MONTH,
        enforced_at=(BILLING,),
        enforcers=(f"{PRICEBOOK}:base_price",),
    ),
    Limit(
        "discount_percent",
        PRICE,
        "Negotiated discount on the invoice subtotal",
        "%",
        MONTH,
        enforced_at=(BILLING,),
        enforcers=(f"{PRICEBOOK}:discount",),
    ),
    Limit(
        "max_users",
        LIMIT,
        "Members of the organisation",
        "users",
        LEVEL,
        enforced_at=(MEMBERSHIP,),
        enforcers=("fedhub.tenancy.store:TenantStore._check_user_quota",),
    ),
    Limit(
        "max_servers_per_tenant",
        LIMIT,
        "Servers pending or running in the organisation",
        "servers",
        LEVEL,
        enforced_at=(SPAWN,),
        enforcers=(f"{QUOTAS}:reserve",),
    ),
    Limit(
        "max_servers_per_user",
        LIMIT,
        "Servers pending or running per user",
        "servers",
        LEVEL,
        enforced_at=(SPAWN,),
        enforcers=(f"{QUOTAS}:reserve",),
    ),
    Limit(
        "profiles",
        ENTITLEMENT,
        "Server sizes users may pick",
        enforced_at=(SPAWN,),
        enforcers=(f"{QUOTAS}:check_profile",),
    ),
    Limit(
        "kernels",
        ENTITLEMENT,
        "Kernel specs installed in (and allowed on) each server",
        enforced_at=(SPAWN,),
        enforcers=("fedhub.extensions.hub.tier_spawner:TierSpawner._install_kernels",),
    ),
    Limit(
        "compute_hours_per_month",
        LIMIT,
        "Compute: CPU-core hours of the servers' reserved profiles",
        "core-hours",
        MONTH,
        CPU_SECONDS,
        3600.0,
        enforced_at=(SPAWN, RUNTIME, BILLING),
        enforcers=(f"{QUOTAS}:reserve", RECONCILER),
        price="compute_hours",
    ),
    Limit(
        "storage_gb",
        LIMIT,
        "Disk used by the members' homes (allocated blocks, like du)",
        "GB",
        LEVEL,
        STORAGE_GB_DAYS,
        enforced_at=(SPAWN, BILLING),
        enforcers=(f"{QUOTAS}:reserve",),
        price="storage_gb_months",
    ),
    Limit(
        "api_calls_per_day",
        LIMIT,
        "API calls (hub REST API and fedhub's services, counted together)",
        "calls",
        DAY,
        API_CALLS,
        enforced_at=(PROXY, BILLING),
        enforcers=(RATE_LIMITER,),
        price="api_calls_1k",
    ),
    Limit(
        "api_calls_per_hour",
        LIMIT,
        "API calls in one hour (burst cap; unset: none)",
        "calls",
        HOUR,
        API_CALLS,
        enforced_at=(PROXY,),
        enforcers=(RATE_LIMITER,),
    ),
    Limit(
        "experiments_per_month",
        LIMIT,
        "Federated experiments submitted",
        "experiments",
        MONTH,
        EXPERIMENTS,
        enforced_at=(SERVICE, BILLING),
        enforcers=(f"{EXP_QUOTA}:check",),
        price="experiments",
    ),
    Limit(
        "max_clients_per_experiment",
        LIMIT,
        "Clients in one experiment",
        "clients",
        REQUEST,
        enforced_at=(SERVICE,),
        enforcers=(f"{EXP_QUOTA}:check",),
    ),
    Limit(
        "max_concurrent_experiments",
        LIMIT,
        "Experiments queued or running at once",
        "experiments",
        LEVEL,
        enforced_at=(SERVICE,),
        enforcers=(f"{EXP_QUOTA}:check",),
    ),
    Limit(
        "federated_client_hours_per_month",
        LIMIT,
        "Federated client time (round duration x clients)",
        "client-hours",
        MONTH,
        FL_CLIENT_SECONDS,
        3600.0,
        enforced_at=(SERVICE, RUNTIME, BILLING),
        enforcers=(
            f"{EXP_QUOTA}:check",
            "fedhub.services.experiments.scheduler:ExperimentScheduler._client_hours_refusal",
        ),
        price="client_hours",
    ),
    Limit(
        "max_rounds_per_experiment",
        LIMIT,
        "Rounds of one experiment",
        "rounds",
        REQUEST,
        enforced_at=(SERVICE, RUNTIME),
        enforcers=(f"{EXP_QUOTA}:check_size",),
    ),
    Limit(
        "max_local_epochs",
        LIMIT,
        "Local epochs per round of one experiment",
        "epochs",
        REQUEST,
        enforced_at=(SERVICE, RUNTIME),
        enforcers=(f"{EXP_QUOTA}:check_size",),
    ),
    Limit(
        "scheduled_jobs_per_tenant",
        LIMIT,
        "Scheduled notebook jobs in the organisation",
        "jobs",
        LEVEL,
        enforced_at=(SERVICE,),
        enforcers=(f"{SCHEDULER}:check_new_job",),
    ),
    Limit(
        "min_schedule_interval_minutes",
        LIMIT,
        "Shortest time between two runs of a scheduled job",
        "minutes",
        REQUEST,
        enforced_at=(SERVICE,),
        enforcers=(f"{SCHEDULER}:check_interval",),
    ),
    Limit(
        "max_concurrent_scheduled_runs",
        LIMIT,
        "Scheduled runs executing at once (more wait, queued)",
        "runs",
        LEVEL,
        enforced_at=(RUNTIME,),
        enforcers=(f"{SCHEDULER}:claim",),
    ),
    Limit(
        "idle_timeout_minutes",
        LIMIT,
        "Idle servers are stopped after",
        "minutes",
        enforced_at=(RUNTIME,),
        enforcers=(RECONCILER,),
    ),
    Limit(
        "audit_retention_days",
        LIMIT,
        "Audit records kept (then purged behind a signed checkpoint)",
        "days",
        enforced_at=(SERVICE,),
        enforcers=("fedhub.audit.chain:AuditLog.retention_days",),
    ),
    Limit(
        "features.sso",
        ENTITLEMENT,
        "Single sign-on (OIDC) logins",
        enforced_at=(LOGIN,),
        enforcers=("fedhub.extensions.hub.oidc:TenantOIDCAuthenticator.update_auth_model",),
    ),
    Limit(
        "features.audit_export",
        ENTITLEMENT,
        "Audit export (CSV, JSONL)",
        enforced_at=(SERVICE,),
        enforcers=("fedhub.services.audit.handlers:EventsHandler.get",),
    ),
    Limit(
        "features.analyst_audit_read",
        ENTITLEMENT,
        "Analysts may read their organisation's audit log",
        enforced_at=(SERVICE,),
        enforcers=("fedhub.services.audit.handlers:AuditHandler.readable_chains",),
    ),
    Limit(
        "features.gpu",
        ENTITLEMENT,
        "Servers with GPUs (profiles whose gpu > 0)",
        enforced_at=(SPAWN,),
        enforcers=(f"{QUOTAS}:check_profile",),
    ),
    Limit(
        "features.marketplace_publishing",
        ENTITLEMENT,
        "Publishing to the marketplace",
        enforced_at=(SERVICE,),
        enforced=False,
        gap="there is no marketplace service yet; the flag is carried for it",
    ),
    # the tier's login policy (docs/security-policy.md)
    Limit(
        "security.mfa_required",
        LIMIT,
        "Local users enrol a TOTP authenticator before their login completes",
        enforced_at=(LOGIN,),
        enforcers=(f"{PASSWORDS}:login_steps", LOCAL_LOGIN),
    ),
    Limit(
        "security.ip_allowlist",
        ENTITLEMENT,
        "Tenant admins may restrict logins to their networks (CIDRs)",
        enforced_at=(LOGIN, SERVICE),
        enforcers=(
            "fedhub.tenancy.allowlist:check_login_address",
            "fedhub.extensions.hub.login_policy:refuse_outside_allowlist",
            "fedhub.tenancy.security:AccountSecurity.set_allowlist",
        ),
    ),
    *(
        Limit(
            f"security.password.{field}",
            LIMIT,
            desc,
            unit,
            enforced_at=(MEMBERSHIP, LOGIN),
            enforcers=(f"{PASSWORDS}:check_password",),
        )
        for field, desc, unit in (
            ("min_length", "Fewest characters in a new password", "characters"),
            ("character_classes", "Of lower case, upper case, digits, symbols", "classes"),
            ("history", "A new password is none of the last N", "passwords"),
        )
    ),
    Limit(
        "security.password.max_age_days",
        LIMIT,
        "An older password must be changed before the login completes (0: never)",
        "days",
        enforced_at=(LOGIN,),
        enforcers=(f"{PASSWORDS}:login_steps", LOCAL_LOGIN),
    ),
    *(
        Limit(
            f"security.sessions.{field}",
            LIMIT,
            desc,
            unit,
            enforced_at=(LOGIN,),
            # checked on every cookie-authenticated hub request (docs/sessions.md)
            enforcers=(
                "fedhub.extensions.hub.sessions:SessionTracker.admits",
                "fedhub.tenancy.sessions:expiry_reason",
            ),
        )
        for field, desc, unit in (
            ("idle_minutes", "A hub login unused this long ends (0: no idle limit)", "minutes"),
            ("absolute_hours", "A hub login ends this long after it began (0: none)", "hours"),
        )
    ),
    # prices beyond what the monthly price includes (one PriceLine each)
    *(
        Limit(f"overage.{field}", PRICE, desc, "USD", enforced_at=(BILLING,), price=line)
        for field, desc, line in (
            ("compute_hour", "Per core-hour beyond the allowance", "compute_hours"),
            ("storage_gb_month", "Per GB-month beyond the allowance", "storage_gb_months"),
            ("api_calls_1k", "Per 1,000 API calls beyond the allowance", "api_calls_1k"),
            ("experiment", "Per experiment beyond the allowance", "experiments"),
            ("client_hour", "Per federated client-hour beyond the allowance", "client_hours"),
            ("memory_gb_hour", "Per reserved GB-hour of memory (none included)", "memory_gb_hours"),
            ("fl_round", "Per federated round (none included)", "fl_rounds"),
        )
    ),
    Limit(
        "overage.cpu_core_hour",
        PRICE,
        "Retired: compute hours are core-hours, priced by overage.compute_hour",
        "USD",
        enforced=False,
        gap="retired when compute hours became core-hours; accepted so old overrides still"
        " load, charged nowhere",
    ),
)

METER_KINDS: tuple[MeterKind, ...] = (
    MeterKind(
        SERVER_SECONDS,
        "second",
        "Time a server was reserved (reports, not priced)",
        (f"{QUOTAS}:meter_running", f"{QUOTAS}:release", f"{SCHEDULER}:record_compute"),
    ),  # fmt: skip
    MeterKind(
        CPU_SECONDS,
        "core-second",
        "Reserved CPU cores x time",
        (f"{QUOTAS}:meter_running", f"{QUOTAS}:release", f"{SCHEDULER}:record_compute"),
    ),  # fmt: skip
    MeterKind(
        MEMORY_GB_SECONDS,
        "GB-second",
        "Reserved memory x time",
        (f"{QUOTAS}:meter_running", f"{QUOTAS}:release", f"{SCHEDULER}:record_compute"),
    ),  # fmt: skip
    MeterKind(
        STORAGE_GB_DAYS,
        "GB-day",
        "Daily sample of each member's home",
        (f"{SAMPLERS}:sample_storage",),
    ),  # fmt: skip
    MeterKind(
        API_CALLS,
        "call",
        "Requests of a tenant's users to the hub API and the services that the rate limiter"
        " let through (fedhub.ratelimit)",
        ("fedhub.metering:flush_api_calls",),
    ),  # fmt: skip
    MeterKind(
        EXPERIMENTS, "experiment", "An experiment accepted (queued)", (f"{EXP_QUOTA}:reserve",)
    ),  # fmt: skip
    MeterKind(
        FL_CLIENT_SECONDS,
        "client-second",
        "Round duration x clients",
        ("fedhub.services.experiments.scheduler:ExperimentScheduler._record_round",),
    ),  # fmt: skip
    MeterKind(
        FL_ROUNDS,
        "round",
        "A federated round finished",
        ("fedhub.services.experiments.scheduler:ExperimentScheduler._record_round",),
    ),  # fmt: skip
)

PRICES: tuple[PriceLine, ...] = (
    PriceLine(
        "compute_hours",
        CPU_SECONDS,
        "core-hour",
        "Compute (CPU-core hours)",
        3600.0,
        "compute_hour",
        "compute_hours_per_month",
    ),  # fmt: skip
    PriceLine(
        "memory_gb_hours", MEMORY_GB_SECONDS, "GB-hour", "Reserved memory", 3600.0, "memory_gb_hour"
    ),  # fmt: skip
    PriceLine(
        "storage_gb_months",
        STORAGE_GB_DAYS,
        "GB-month",
        "Storage",
        1.0,
        "storage_gb_month",
        "storage_gb",
        per_day=True,
    ),  # fmt: skip
    PriceLine(
        "api_calls_1k",
        API_CALLS,
        "1k calls",
        "API calls",
        1000.0,
        "api_calls_1k",
        "api_calls_per_day",
        included_per_day=True,
    ),  # fmt: skip
    PriceLine(
        "experiments",
        EXPERIMENTS,
        "experiment",
        "Federated experiments",
        1.0,
        "experiment",
        "experiments_per_month",
    ),  # fmt: skip
    PriceLine(
        "client_hours",
        FL_CLIENT_SECONDS,
        "client-hour",
        "Federated client time",
        3600.0,
        "client_hour",
        "federated_client_hours_per_month",
    ),  # fmt: skip
    PriceLine("fl_rounds", FL_ROUNDS, "round", "Federated rounds", 1.0, "fl_round"),
)

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


def used(session, tenant: str, key: str, now: datetime | None = None) -> float:
    """How much of a metered, windowed limit the tenant has used in the window holding ``now``.

    The quota's number and billing's number come from the same meter kind and the same
    ``per_unit`` (billing's :data:`PRICES` carry the same values; the registry test checks).
    """
    from fedhub import metering
    from fedhub.db.base import utcnow

    lim = get(key)
    if lim.kind is None or lim.window not in (MONTH, DAY, HOUR):
        raise ValueError(f"{key} is not a windowed meter limit")
    start, end = window_bounds(lim.window, now or utcnow())
    return to_units(key, metering.usage_total(session, tenant, lim.kind, start, end))


def compute_hours_used(session, tenant: str, now: datetime | None = None) -> float:
    """CPU-core hours this month: what the spawn quota, the reconciler and billing count."""
    return used(session, tenant, "compute_hours_per_month", now)


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


# -- what consumers show ----------------------------------------------------------------


def latest_level(session, tenant: str, key: str) -> float:
    """A sampled level (storage): the tenant's total at its latest sample, in the key's unit.

    ``storage_gb_days`` samples are GB x 1 day, one per member and day, so the latest
    day's sum is the GB the tenant holds (as last measured by the daily sample).
    """
    from sqlalchemy import func, select

    from fedhub.metering import MeterEvent

    lim = get(key)
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
    return to_units(key, float(total))


def usage_rows(session, tenant: str, tier: Any, now: datetime | None = None) -> list[dict]:
    """Every metered limit with its value and usage: the quota panel's rows.

    Windowed limits count their window; a sampled level (``storage_gb``) shows the
    latest daily sample.
    """
    rows = []
    for lim in LIMITS:
        if lim.role != LIMIT or lim.kind is None or lim.value(tier) is None:
            continue  # not metered, or an optional limit the tier does not set
        if lim.window in (MONTH, DAY, HOUR):
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


if __name__ == "__main__":
    main()
