"""The registry's usage entries: every kind of usage event (:data:`METER_KINDS`) and every
usage line of an invoice (:data:`PRICES`). Every tier key is in :mod:`fedhub.limits.catalog`.

A new meter kind or price line is added here; ``tests/foundation/test_limits_registry.py``
fails until it names its producer.
"""

from __future__ import annotations

from fedhub.limits.model import (
    API_CALLS,
    CPU_SECONDS,
    DASK_WORKER_SECONDS,
    EXP_QUOTA,
    EXPERIMENTS,
    FL_CLIENT_SECONDS,
    FL_ROUNDS,
    GATEWAY_METER,
    MARKETPLACE,
    MARKETPLACE_USES,
    MEMORY_GB_SECONDS,
    QUOTAS,
    SAMPLERS,
    SCHEDULER,
    SERVER_SECONDS,
    STORAGE_GB_DAYS,
    MeterKind,
    PriceLine,
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
        "Reserved CPU cores x time (servers, scheduled runs, Dask Gateway workers)",
        (
            f"{QUOTAS}:meter_running",
            f"{QUOTAS}:release",
            f"{SCHEDULER}:record_compute",
            GATEWAY_METER,
        ),
    ),  # fmt: skip
    MeterKind(
        MEMORY_GB_SECONDS,
        "GB-second",
        "Reserved memory x time (servers, scheduled runs, Dask Gateway workers)",
        (
            f"{QUOTAS}:meter_running",
            f"{QUOTAS}:release",
            f"{SCHEDULER}:record_compute",
            GATEWAY_METER,
        ),
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
        "Round duration x clients; a federation's member: its own clients' seconds",
        (
            "fedhub.services.experiments.scheduler:ExperimentScheduler._record_round",
            "fedhub.services.experiments.federations.runner:FederationRunner._record_round",
        ),
    ),  # fmt: skip
    MeterKind(
        FL_ROUNDS,
        "round",
        "A federated round finished",
        ("fedhub.services.experiments.scheduler:ExperimentScheduler._record_round",),
    ),  # fmt: skip
    MeterKind(
        DASK_WORKER_SECONDS,
        "worker-second",
        "Time a Dask Gateway worker ran (reports; its cores and memory x time are also"
        " recorded as cpu_seconds and memory_gb_seconds, and priced so)",
        (GATEWAY_METER,),
    ),  # fmt: skip
    MeterKind(
        MARKETPLACE,
        "item",
        "A marketplace sale, monthly renewal or refund: an exact amount (attributes.amount),"
        " billed as one charge line (fedhub.billing.rating.CHARGE_KINDS), not priced by the tier",
        (
            "fedhub.marketplace.store:MarketStore.purchase",
            "fedhub.marketplace.store:MarketStore.renew_monthly",
        ),
    ),  # fmt: skip
    MeterKind(
        MARKETPLACE_USES,
        "use",
        "A marketplace asset used by a run (one per experiment and asset; reports, not priced:"
        " the licence was paid for at purchase)",
        ("fedhub.marketplace.store:MarketStore.use",),
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
