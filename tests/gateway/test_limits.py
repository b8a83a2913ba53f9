"""A tier's gateway keys as dask-gateway options and ClusterConfig, and the refusals (fast)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from dask_gateway_server.backends.local import LocalClusterConfig

from fedhub.gateway import client_environment
from fedhub.gateway import limits as gw
from fedhub.gateway.meter import WorkerClock, WorkerSlice
from fedhub.tiers import load_tiers

CATALOG = load_tiers()


@pytest.mark.parametrize("tier", CATALOG.names())
def test_each_tier_maps_onto_options_and_a_cluster_config_dask_gateway_accepts(tier):
    lim = gw.GatewayLimits.of(tier, CATALOG.get(tier))
    options = gw.cluster_options(lim)
    chosen = options.parse_options({})  # the defaults
    overrides = options.get_configuration(chosen, None)
    config = LocalClusterConfig(**overrides)  # dask-gateway's own validation
    assert config.cluster_max_workers == CATALOG.get(tier).gateway_max_workers
    assert config.worker_cores <= CATALOG.get(tier).gateway_worker_cores
    assert config.worker_memory <= CATALOG.get(tier).gateway_worker_memory_gb * gw.GIB
    assert config.idle_timeout == CATALOG.get(tier).idle_timeout_minutes * 60
    # the largest worker the tier allows still fits max_workers of them
    big = options.get_configuration(
        options.parse_options(
            {"worker_cores": lim.worker_cores, "worker_memory": lim.worker_memory_gb}
        ),
        None,
    )
    assert LocalClusterConfig(**big).cluster_max_workers == lim.max_workers


@pytest.mark.parametrize(
    ("request_", "key"),
    [
        ({"worker_cores": 3}, "gateway_worker_cores"),
        ({"worker_memory": 4.5}, "gateway_worker_memory_gb"),
    ],
)
def test_a_worker_larger_than_the_tier_is_refused_naming_the_key(request_, key):
    lim = gw.GatewayLimits.of("professional", CATALOG.get("professional"))  # 2 cores, 4 GB
    with pytest.raises(ValueError, match=f"^{key}: the professional tier allows"):
        gw.cluster_options(lim).parse_options(request_)


def test_clusters_and_scale_refusals_name_the_limit():
    lim = gw.GatewayLimits.of("starter", CATALOG.get("starter"))  # 1 cluster, 2 workers
    assert gw.clusters_refusal(lim, "globex", 0) is None
    assert gw.clusters_refusal(lim, "globex", 1).startswith(
        "gateway_max_clusters: the starter tier allows 1 Dask Gateway cluster(s) per tenant"
    )
    config = gw.cluster_config(lim, 1, 2.0)
    assert gw.scale_refusal(config, 2, "starter") is None
    assert gw.scale_refusal(config, 3, "starter") == (
        "gateway_max_workers: the starter tier allows 2 workers per cluster, asked for 3 "
        "(a tenant admin can change the plan)"
    )


def test_worker_clock_slices_cover_the_run_once():
    t0 = datetime(2026, 11, 30, 12)
    clock = WorkerClock()
    clock.started(WorkerSlice("acme", "alice", "c", "w", 2.0, 4.0, t0, t0))
    first = clock.tick(t0 + timedelta(seconds=60))
    last = clock.stopped("c", "w", t0 + timedelta(seconds=90))
    assert [(s.start, s.end) for s in first + last] == [
        (t0, t0 + timedelta(seconds=60)),
        (t0 + timedelta(seconds=60), t0 + timedelta(seconds=90)),
    ]
    kinds = {u.kind: u.quantity for u in last[0].usages()}
    assert kinds == {"dask_worker_seconds": 30.0, "cpu_seconds": 60.0, "memory_gb_seconds": 120.0}
    assert clock.stopped("c", "w", t0) == [] and len(clock) == 0


def test_the_client_environment_names_the_hub_route_and_the_tls_proxy():
    env = client_environment("http://127.0.0.1:8000/", "127.0.0.1", 8786)
    assert env == {
        "DASK_GATEWAY__ADDRESS": "http://127.0.0.1:8000/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": "gateway://127.0.0.1:8786",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    }


def test_a_service_names_the_tenant_and_gets_that_tenants_limits():
    """The experiments service's clusters: sized and refused by the named tenant's tier."""
    known = {"globex": gw.GatewayLimits.of("starter", CATALOG.get("starter"))}
    options = gw.service_options(known.get)
    chosen = options.parse_options({"tenant": "globex", "worker_memory": 2.0, "idle_timeout": 60})
    config = LocalClusterConfig(**options.get_configuration(chosen, None))
    assert config.cluster_max_workers == 2 and config.idle_timeout == 60
    too_big = options.parse_options({"tenant": "globex", "worker_cores": 2})
    with pytest.raises(ValueError, match="^gateway_worker_cores: the starter tier allows"):
        options.get_configuration(too_big, None)
    with pytest.raises(ValueError, match="'nope' is not known"):
        options.get_configuration(options.parse_options({"tenant": "nope"}), None)


def test_a_services_worker_time_is_recorded_but_not_priced():
    t0 = datetime(2026, 11, 30, 12)
    slice_ = WorkerSlice("acme", "service:experiments", "c", "w", 1.0, 1.0, t0,
                         t0 + timedelta(seconds=10), priced=False)  # fmt: skip
    assert [u.kind for u in slice_.usages()] == ["dask_worker_seconds"]
