"""How to make each meter producer of :data:`fedhub.limits.METER_KINDS` run once
(:data:`EXERCISES`, used by ``test_meter_producers.py``), on the ``url`` database of
``conftest.py``; ``run_storage`` also serves ``test_limits_registry.py``."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers

CATALOG = load_tiers(DEFAULT_TIERS_PATH)


def recorded_kinds(url) -> set[str]:
    from sqlalchemy import select

    from fedhub import db
    from fedhub.metering import MeterEvent

    with db.session_scope(url) as s:
        return set(s.scalars(select(MeterEvent.kind).distinct()))


def clear_events(url) -> None:
    from sqlalchemy import delete

    from fedhub import db
    from fedhub.metering import MeterEvent

    with db.session_scope(url) as s:
        s.execute(delete(MeterEvent))


def run_servers(url, tmp_path, monkeypatch, release: bool) -> None:
    from fedhub import quotas
    from fedhub.tenancy.store import TenantStore

    store = TenantStore(url, CATALOG)
    store.create_tenant("acme", tier="starter")
    start = datetime(2026, 10, 3, 9)
    quotas.reserve(url, tenant="acme", username="ann", server_name="", profile="small",
                   catalog=CATALOG, now=start)  # fmt: skip
    if release:
        quotas.release(url, "ann", "", now=start + timedelta(hours=1))
    else:
        quotas.meter_running(url, now=start + timedelta(hours=1))


def run_storage(url, tmp_path, monkeypatch) -> None:
    from fedhub.billing import samplers
    from fedhub.tenancy.store import TenantStore

    store = TenantStore(url, CATALOG)
    store.create_tenant("acme", tier="starter")
    store.add_user("ann", tenant="acme")
    (tmp_path / "homes" / "ann").mkdir(parents=True)
    (tmp_path / "homes" / "ann" / "f").write_bytes(b"x" * 10_000)
    template = str(tmp_path / "homes" / "{username}")
    assert samplers.sample_storage(url, template, datetime(2026, 10, 3)) == 1


def run_api_calls(url, tmp_path, monkeypatch) -> None:
    from collections import Counter

    from fedhub import metering

    monkeypatch.setattr(metering, "_calls", Counter())
    monkeypatch.setattr(metering, "_start_flusher", lambda: None)
    metering.count_api_call("billing", "acme", "ann")
    assert metering.flush_api_calls(url) == 1


def run_experiment(url, tmp_path, monkeypatch):
    from fedhub.services.experiments import quota
    from fedhub.services.experiments.spec import parse_spec

    spec = parse_spec({"clients": 2, "rounds": 1})
    return quota.reserve(url, "acme", "ann", "starter", CATALOG.get("starter"), spec)


def run_rounds(url, tmp_path, monkeypatch) -> None:
    from fedhub.services.experiments.scheduler import ExperimentScheduler

    run = run_experiment(url, tmp_path, monkeypatch)
    clear_events(url)
    record = {"round": 1, "duration_s": 2.0, "clients": 3}
    ExperimentScheduler._record_round(SimpleNamespace(db_url=url), run.id, "acme", "ann", record)


def run_federation_round(url, tmp_path, monkeypatch) -> None:
    from fedhub.services.experiments.federations import lifecycle
    from fedhub.services.experiments.federations.runner import FederationRunner

    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(tmp_path / "spool"))
    schema = {
        "features": [{"name": "a", "dtype": "float32"}],
        "label": {"name": "y", "num_classes": 2},
    }
    fed = lifecycle.create(url, tenant="acme", username="ann", name="f", task={"rounds": 2},
                           schema=schema, privacy={}, dataset="d@1")  # fmt: skip
    record = {"round": 1, "duration_s": 2.0, "per_member": {"acme": {"client_seconds": 1.5}}}
    FederationRunner._record_round(SimpleNamespace(db_url=url), fed, record, {"acme": "ann"})


def run_scheduled(url, tmp_path, monkeypatch) -> None:
    from fedhub.scheduler import claims, runner

    tier = CATALOG.get("enterprise")
    start = datetime(2026, 10, 3, 9)
    job = claims.create_job(url, tier, start, tenant="acme", username="ann", name="r",
                            notebook="usage", parameters={}, cron="0 * * * *", timezone="UTC",
                            timeout_seconds=60, notify=False, paused=False)  # fmt: skip
    (run_id,) = claims.enqueue_due(url, start + timedelta(hours=1))
    result = runner.RunResult("succeeded", None, None, 30.0, [])
    claims.finish(url, run_id, result, start + timedelta(hours=1, minutes=1), 1.0, 2.0)
    assert job.id


def run_gateway_workers(url, tmp_path, monkeypatch) -> None:
    from fedhub.gateway.meter import WorkerSlice, record_worker_time

    start = datetime(2026, 10, 3, 9)
    one = WorkerSlice(tenant="acme", username="ann", cluster="c1", worker="w1", cores=2.0,
                      memory_gb=4.0, start=start, end=start + timedelta(seconds=90))  # fmt: skip
    assert record_worker_time(url, [one]) == 3
    assert record_worker_time(url, [one]) == 0  # the same slice counts once


def run_marketplace_sale(url, tmp_path, monkeypatch):
    from fedhub.marketplace.store import Actor, MarketStore
    from fedhub.tenancy.store import TenantStore

    tenants = TenantStore(url, CATALOG)
    tenants.create_tenant("acme", tier="professional")
    tenants.create_tenant("globex", tier="starter")
    market = MarketStore(url, tenants)
    spec = {"name": "Strategy", "asset_type": "algorithm", "price": "10.00", "pricing": "monthly"}
    market.publish(Actor("ann", "acme", "tenant-admin"), spec, content=b"x = 1\n", filename="s.py")
    market.review(Actor("root", None, "platform-admin"), "strategy", "1.0.0", "approve")
    market.purchase(Actor("bob", "globex", "tenant-admin"), "strategy", "key")
    return market


def run_marketplace_renewal(url, tmp_path, monkeypatch):
    market = run_marketplace_sale(url, tmp_path, monkeypatch)
    clear_events(url)
    assert market.renew_monthly(datetime.now() + timedelta(days=62)) >= 2


def run_marketplace_use(url, tmp_path, monkeypatch):
    market = run_marketplace_sale(url, tmp_path, monkeypatch)
    clear_events(url)
    ref = "market/strategy@1.0.0"
    market.use("globex", "bob", ref, context={"experiment": "e1"})
    assert market.use("globex", "bob", ref, context={"experiment": "e1"})["version"] == "1.0.0"


#: How to make each declared producer run once; a producer added to the registry needs one.
EXERCISES = {
    "fedhub.quotas:meter_running": lambda *a: run_servers(*a, release=False),
    "fedhub.quotas:release": lambda *a: run_servers(*a, release=True),
    "fedhub.billing.samplers:sample_storage": run_storage,
    "fedhub.metering:flush_api_calls": run_api_calls,
    "fedhub.services.experiments.quota:reserve": run_experiment,
    "fedhub.services.experiments.scheduler:ExperimentScheduler._record_round": run_rounds,
    "fedhub.services.experiments.federations.runner:FederationRunner._record_round": (
        run_federation_round
    ),
    "fedhub.scheduler.claims:record_compute": run_scheduled,
    "fedhub.gateway.meter:record_worker_time": run_gateway_workers,
    "fedhub.marketplace.store:MarketStore.purchase": run_marketplace_sale,
    "fedhub.marketplace.store:MarketStore.renew_monthly": run_marketplace_renewal,
    "fedhub.marketplace.store:MarketStore.use": run_marketplace_use,
}
