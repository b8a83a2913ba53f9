"""Prometheus metrics of the tier spawner, in the hub's default registry (so on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SPAWN_REFUSALS = Counter(
    "fedhub_spawn_refusals_total",
    "Server spawns refused by a tier limit, by reason",
    ["reason", "tenant"],
)
RUNNING_SERVERS = Gauge(
    "fedhub_running_servers",
    "Servers reserved (pending or running) per tenant, as of the last reconciler run",
    ["tenant"],
)
USAGE = Counter(
    "fedhub_usage_total",
    "Usage recorded into the meter by the tier spawner, per tenant and kind",
    ["tenant", "kind"],
)
RECONCILER_RUNS = Counter(
    "fedhub_reconciler_runs_total", "Tier reconciler runs, by result", ["result"]
)
SERVERS_STOPPED = Counter(
    "fedhub_servers_stopped_total",
    "Servers stopped by the reconciler, by reason",
    ["reason", "tenant"],
)
QUOTA_CHECK_SECONDS = Histogram(
    "fedhub_quota_check_seconds",
    "Time to check spawn limits and reserve a slot (one database transaction)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SESSION_THREAD_VIOLATIONS = Counter(
    "fedhub_session_thread_violations_total",
    "Uses of the hub's database session off the event loop's thread (a bug; see the ERROR log)",
    ["kind"],
)
