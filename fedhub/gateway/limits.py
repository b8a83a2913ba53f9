"""A tier's Dask Gateway limits as dask-gateway-server options and cluster configuration.

dask-gateway enforces limits in three layers (STYLE.md): bounded options a user may pick
(:func:`cluster_options`: cores and memory per worker, at most the tier's), the
``ClusterConfig`` built from them (:func:`cluster_config`: ``cluster_max_workers``,
``cluster_max_cores``, ``cluster_max_memory``, which the gateway checks again at every
scale and heartbeat), and fedhub's own refusals that the gateway cannot express (clusters
per tenant, :func:`clusters_refusal`; a scale request beyond the maximum, :func:`scale_refusal`).

Every refusal names the tier key it enforces (``gateway_max_workers`` ...), the tier and
the value, so a user knows which limit they hit and whom to ask. Pure functions of a
:class:`fedhub.tiers.Tier`: no I/O, tested alone (``tests/gateway/test_limits.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dask_gateway_server.options import Float, Integer, Options, String

from fedhub.tiers import Tier

GIB = 2**30
#: what the scheduler of every gateway cluster is given (outside the workers' limits)
SCHEDULER_CORES = 1
SCHEDULER_MEMORY_GB = 1.0


@dataclass(frozen=True)
class GatewayLimits:
    """The four gateway keys of one tenant's effective tier."""

    tier: str
    max_clusters: int
    max_workers: int
    worker_cores: int
    worker_memory_gb: float
    idle_timeout_s: float = 0.0  # the tier's idle_timeout_minutes: idle clusters stop too

    @classmethod
    def of(cls, tier_name: str, tier: Tier) -> GatewayLimits:
        return cls(
            tier=tier_name,
            max_clusters=tier.gateway_max_clusters,
            max_workers=tier.gateway_max_workers,
            worker_cores=tier.gateway_worker_cores,
            worker_memory_gb=tier.gateway_worker_memory_gb,
            idle_timeout_s=tier.idle_timeout_minutes * 60.0,
        )

    def __str__(self) -> str:
        return f"the {self.tier} tier"


class _TierBound:
    """A bounded option whose refusal names the tier key that sets its maximum."""

    def __init__(self, *args, limit_key: str, limits: GatewayLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_key = limit_key
        self.limits = limits

    def check(self, x):
        if self.max is not None and x > self.max:
            raise ValueError(too_large(self.limit_key, self.limits, self.field, x, self.max))


def too_large(key: str, limits: GatewayLimits, field: str, asked: float, allowed: float) -> str:
    return (
        f"{key}: {limits} allows {field} up to {allowed:g}, asked for {asked:g} "
        "(a tenant admin can change the plan)"
    )


class TierInteger(_TierBound, Integer):
    def validate(self, x):
        if isinstance(x, int) and not isinstance(x, bool):
            self.check(x)
        return Integer.validate(self, x)


class TierFloat(_TierBound, Float):
    def validate(self, x):
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            self.check(float(x))
        return Float.validate(self, x)


def cluster_config(limits: GatewayLimits, worker_cores: int, worker_memory_gb: float) -> dict:
    """``ClusterConfig`` overrides for a cluster of ``limits`` with the chosen worker size.

    ``cluster_max_workers`` is the tier's; cores and memory are capped to what that many
    workers of this size and the scheduler need, so dask-gateway's three checks agree.
    """
    n = limits.max_workers
    return {
        "worker_cores": worker_cores,
        "worker_threads": worker_cores,
        "worker_memory": int(worker_memory_gb * GIB),
        "scheduler_cores": SCHEDULER_CORES,
        "scheduler_memory": int(SCHEDULER_MEMORY_GB * GIB),
        "cluster_max_workers": n,
        "cluster_max_cores": float(SCHEDULER_CORES + n * worker_cores),
        "cluster_max_memory": int((SCHEDULER_MEMORY_GB + n * worker_memory_gb) * GIB),
        "idle_timeout": limits.idle_timeout_s,
    }


def cluster_options(limits: GatewayLimits) -> Options:
    """The options a user of ``limits`` may set, bounded by the tier."""

    def handler(options: Any, user: Any = None) -> dict:
        return cluster_config(limits, options.worker_cores, options.worker_memory)

    return Options(
        TierInteger(
            "worker_cores",
            default=1,
            min=1,
            max=max(1, limits.worker_cores),
            label="Cores per worker",
            limit_key="gateway_worker_cores",
            limits=limits,
        ),
        TierFloat(
            "worker_memory",
            default=min(2.0, limits.worker_memory_gb),
            min=min(0.25, limits.worker_memory_gb),
            max=limits.worker_memory_gb,
            label="Memory per worker (GiB)",
            limit_key="gateway_worker_memory_gb",
            limits=limits,
        ),
        handler=handler,
    )


def service_options(limits_of: Callable[[str], GatewayLimits | None]) -> Options:
    """The options of a hub service that runs clusters for tenants (the experiments service):
    the tenant it runs for, then a worker size and idle timeout checked against that
    tenant's tier (``limits_of(tenant)``, looked up by the backend before the handler runs)."""

    def handler(options: Any, user: Any = None) -> dict:
        lim = limits_of(options.tenant)
        if lim is None:
            raise ValueError(f"tenant {options.tenant!r} is not known to the gateway")
        for key, field, asked, allowed in (
            ("gateway_worker_cores", "worker_cores", options.worker_cores, lim.worker_cores),
            ("gateway_worker_memory_gb", "worker_memory", options.worker_memory,
             lim.worker_memory_gb),
        ):  # fmt: skip
            if asked > allowed:
                raise ValueError(too_large(key, lim, field, asked, allowed))
        config = cluster_config(lim, options.worker_cores, options.worker_memory)
        if options.idle_timeout > 0:
            config["idle_timeout"] = options.idle_timeout
        return config

    return Options(
        String("tenant", default="", label="Tenant the cluster runs for"),
        Integer("worker_cores", default=1, min=1, max=256, label="Cores per worker"),
        Float("worker_memory", default=1.0, min=0.25, max=4096, label="Memory per worker (GiB)"),
        Float("idle_timeout", default=0.0, min=0.0, label="Idle seconds before it stops (0: tier)"),
        handler=handler,
    )


def clusters_refusal(limits: GatewayLimits, tenant: str, active: int) -> str | None:
    """Why the tenant may not start another cluster (None: it may)."""
    if active < limits.max_clusters:
        return None
    if limits.max_clusters == 0:
        return f"gateway_max_clusters: {limits} has no Dask Gateway clusters"
    return (
        f"gateway_max_clusters: {limits} allows {limits.max_clusters} Dask Gateway "
        f"cluster(s) per tenant and {tenant} has {active} running; stop one first"
    )


def scale_refusal(config: dict, requested: int, tier: str) -> str | None:
    """Why a cluster of ``config`` (its serialized ``ClusterConfig``, fixed when it was
    created) may not have ``requested`` workers (None: it may)."""
    allowed = config.get("cluster_max_workers")
    if allowed is None or requested <= allowed:
        return None
    return (
        f"gateway_max_workers: the {tier} tier allows {allowed} workers per cluster, "
        f"asked for {requested} (a tenant admin can change the plan)"
    )
