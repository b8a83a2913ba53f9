"""The registry's entries: every tier key (:data:`LIMITS`), every kind of usage event
(:data:`METER_KINDS`) and every usage line of an invoice (:data:`PRICES`).

A new tier key, meter kind or price line is added here; ``tests/foundation/
test_limits_registry.py`` fails until it names its enforcement point or its producer.
"""

from __future__ import annotations

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
    Limit,
    MeterKind,
    PriceLine,
)

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
        "max_agents_per_experiment",
        LIMIT,
        "Agent groups (clients) of one reinforcement-learning experiment (graph_td3)",
        "agents",
        REQUEST,
        enforced_at=(SERVICE, RUNTIME),
        enforcers=(f"{EXP_QUOTA}:check_size",),
    ),
    Limit(
        "max_concurrent_experiments",
        LIMIT,
        "Experiments queued or running at once (a running federation counts for each member)",
        "experiments",
        LEVEL,
        enforced_at=(SERVICE,),
        enforcers=(
            f"{EXP_QUOTA}:check",
            "fedhub.services.experiments.federations.runner:FederationRunner.check_members",
        ),
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
            "fedhub.services.experiments.federations.runner:FederationRunner.check_members",
            "fedhub.services.experiments.federations.runner:FederationRunner._stop_reason",
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
    # Dask Gateway clusters (fedhub.gateway, docs/gateway.md)
    Limit(
        "gateway_max_clusters",
        LIMIT,
        "Dask Gateway clusters pending or running in the organisation",
        "clusters",
        LEVEL,
        enforced_at=(SERVICE,),
        enforcers=(f"{GATEWAY}.start_cluster", "fedhub.gateway.limits:clusters_refusal"),
    ),
    Limit(
        "gateway_max_workers",
        LIMIT,
        "Workers of one Dask Gateway cluster (its cluster_max_workers; a larger scale is refused)",
        "workers",
        REQUEST,
        enforced_at=(SERVICE,),
        enforcers=(f"{GATEWAY}._refuse_beyond_limits", "fedhub.gateway.limits:cluster_config"),
    ),
    Limit(
        "gateway_worker_cores",
        LIMIT,
        "Cores a Dask Gateway worker may ask for (cluster option worker_cores)",
        "cores",
        REQUEST,
        enforced_at=(SERVICE,),
        enforcers=("fedhub.gateway.limits:cluster_options",),
    ),
    Limit(
        "gateway_worker_memory_gb",
        LIMIT,
        "Memory a Dask Gateway worker may ask for (cluster option worker_memory)",
        "GB",
        REQUEST,
        enforced_at=(SERVICE,),
        enforcers=("fedhub.gateway.limits:cluster_options",),
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
