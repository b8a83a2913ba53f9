"""Spawn-time limits in the reservation layer, on SQLite and PostgreSQL.

The 50-thread race test drives :func:`fedhub.quotas.reserve` directly against a
real database (both engines, 20 repetitions); ``test_hub_spawner.py`` races real
spawn requests through a real hub.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from fedhub import metering, quotas
from fedhub.db import session_scope
from fedhub.db.base import utcnow

THREADS = 50
LIMIT = 5
REPETITIONS = 20


def _reserve(store, tenant, user, server="", profile=None, **kw):
    return quotas.reserve(
        store.db,
        tenant=tenant,
        username=user,
        server_name=server,
        profile=profile,
        catalog=store.tiers,
        **kw,
    )


def test_fifty_concurrent_reservations_grant_exactly_the_limit(store):
    store.create_tenant(
        "race",
        tier="starter",
        overrides={"max_servers_per_tenant": LIMIT, "max_servers_per_user": THREADS},
    )
    store.create_tenant("other", tier="starter")
    for rep in range(REPETITIONS):
        barrier = threading.Barrier(THREADS)
        granted, refused, errors = [], [], []

        def attempt(i, rep=rep, barrier=barrier, granted=granted, refused=refused, errors=errors):
            barrier.wait()
            try:
                # half the requests are users' default servers, half named servers of one user
                user, server = (f"u{i}", "") if i % 2 else ("heavy", f"s{rep}-{i}")
                granted.append(_reserve(store, "race", user, server))
            except quotas.TenantServerLimit:
                refused.append(i)
            except Exception as e:  # anything else is a bug the test must show
                errors.append(e)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert len(granted) == LIMIT, f"repetition {rep}: {len(granted)} granted"
        assert len(refused) == THREADS - LIMIT
        assert len(quotas.reservations(store.db, "race")) == LIMIT
        for r in granted:
            assert quotas.release(store.db, r.username, r.server_name) is not None
    # another tenant's slots were never touched
    assert quotas.reservations(store.db, "other") == []


def test_refusal_reasons_and_messages(store):
    store.create_tenant(
        "small", "Small Co", tier="starter", overrides={"max_servers_per_tenant": 2}
    )
    r = _reserve(store, "small", "ann")
    assert (r.profile, r.cpu, r.memory_gb) == ("small", 1, 2)
    with pytest.raises(quotas.UserServerLimit) as e:
        _reserve(store, "small", "ann", "second")
    assert "1 of the 1 servers" in e.value.message and "Stop one of your servers" in e.value.message
    _reserve(store, "small", "ben")
    with pytest.raises(quotas.TenantServerLimit) as e:
        _reserve(store, "small", "cid")
    assert "running 2 of the 2 servers" in e.value.message
    assert e.value.details == {  # the one shape of fedhub.limits.details
        "limit": "max_servers_per_tenant", "allowed": 2, "used": 2, "requested": 1,
        "unit": "servers",
    }  # fmt: skip
    with pytest.raises(quotas.ProfileNotAllowed) as e:
        _reserve(store, "small", "cid", profile="large")
    assert "Choose one of: small, medium" in e.value.message
    with pytest.raises(quotas.StorageOverQuota) as e:
        _reserve(store, "small", "cid", storage_bytes=6 * quotas.GIB)
    assert "6.000 GB of the 5 GB" in e.value.message
    # a stopped server frees its slot
    quotas.release(store.db, "ben", "")
    assert _reserve(store, "small", "cid").username == "cid"


def test_compute_budget_and_suspension_refuse(store):
    store.create_tenant("spent", "Spent Ltd", tier="free")
    now = utcnow()
    with session_scope(store.db) as s:
        metering.record(
            s,
            [
                metering.Usage(
                    "spent", metering.CPU_SECONDS, 10.5 * 3600, now, now, "test", "k1", "ann"
                )
            ],
        )
    with pytest.raises(quotas.ComputeBudgetExhausted) as e:
        _reserve(store, "spent", "ann")
    assert "used 10.50 of the 10 compute hours" in e.value.message
    assert quotas.next_month(now) in e.value.message
    from fedhub.tenancy.models import TenantStatus

    store.create_tenant("paused", "Paused Inc", tier="starter")
    store.set_status("paused", TenantStatus.SUSPENDED, reason="unpaid")
    with pytest.raises(quotas.TenantSuspendedRefusal) as e:
        _reserve(store, "paused", "bo")
    assert "'Paused Inc' is suspended" in e.value.message


def test_metering_slices_count_once_and_release_records_the_rest(store):
    store.create_tenant("meter", tier="professional")
    t0 = utcnow() - timedelta(seconds=100)
    r = _reserve(store, "meter", "ann", profile="medium", now=t0)
    first = quotas.meter_running(store.db, now=t0 + timedelta(seconds=60))
    assert {u.kind: u.quantity for u in first} == {
        "server_seconds": 60,
        "cpu_seconds": 120,
        "memory_gb_seconds": 480,
    }
    # the same slice offered again (a retry, a restarted hub replaying it) counts once
    with session_scope(store.db) as s:
        assert metering.record(s, first) == 0
    assert quotas.meter_running(store.db, now=t0 + timedelta(seconds=60)) == []
    quotas.release(store.db, r.username, r.server_name, now=t0 + timedelta(seconds=90))
    with session_scope(store.db) as s:
        total = metering.usage_total(s, "meter", "server_seconds", t0 - timedelta(days=1))
    assert total == pytest.approx(90)
